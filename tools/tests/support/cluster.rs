//! Three `strand serve` processes on loopback forming a cluster (`--node-id`, `--peers`),
//! each on its own free ports and data directory, killed when dropped.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use super::{Broker, free_port};

pub struct Node {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub broker: Option<Broker>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    peers: String,
    /// A `--config` file every node reads, if any.
    config: Option<(tempfile::TempDir, std::path::PathBuf)>,
}

impl Cluster {
    /// Three nodes, ids 0, 1 and 2, all started.
    pub fn start() -> Cluster {
        Cluster::start_configured(None)
    }

    /// Three nodes reading the TOML `config` (if given) with `--config`.
    pub fn start_configured(config: Option<&str>) -> Cluster {
        let config = config.map(|text| {
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = dir.path().join("strand.toml");
            std::fs::write(&path, text).expect("config file");
            (dir, path)
        });
        let internal: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let peers = internal
            .iter()
            .enumerate()
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes: (0..3)
                .map(|_| Node {
                    port: free_port(),
                    dir: tempfile::tempdir().expect("temporary directory"),
                    broker: None,
                })
                .collect(),
            peers,
            config,
        };
        for id in 0..3 {
            cluster.start_node(id);
        }
        cluster
    }

    /// (Re)starts node `id` on its ports and data directory.
    pub fn start_node(&mut self, id: usize) {
        let node = &mut self.nodes[id];
        let node_id = id.to_string();
        let mut flags = vec![
            "--metrics",
            "none",
            "--node-id",
            &node_id,
            "--peers",
            &self.peers,
        ];
        if let Some((_, path)) = &self.config {
            flags.extend(["--config", path.to_str().expect("a UTF-8 path")]);
        }
        node.broker = Some(Broker::start_on(node.port, 1, node.dir.path(), &flags));
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: usize) {
        if let Some(broker) = self.nodes[id].broker.take() {
            broker.kill();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `id`'s process.
    pub fn signal(&self, id: usize, signal: &str) {
        let pid = self.nodes[id].broker.as_ref().expect("running node").pid();
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    pub fn bootstrap(&self, id: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[id].port)
    }

    /// Every node's Kafka address, for a client's bootstrap list.
    pub fn bootstrap_all(&self) -> String {
        (0..self.nodes.len())
            .map(|id| self.bootstrap(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// An admin client that talks to node `id` only (requests a follower must forward).
    pub fn admin(&self, id: usize) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap(id))
            .create()
            .expect("an admin client")
    }

    /// A librdkafka configuration bootstrapped on every node.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap_all())
            .set("message.timeout.ms", "30000")
            .set("socket.timeout.ms", "10000")
            .set("topic.metadata.refresh.interval.ms", "500");
        config
    }

    /// Stops every node still running, cleanly.
    pub fn stop(mut self) {
        for node in &mut self.nodes {
            if let Some(broker) = node.broker.take() {
                broker.stop();
            }
        }
    }
}

/// How long cluster tests wait for a state before failing.
pub const SETTLE: Duration = Duration::from_secs(30);
