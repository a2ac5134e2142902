//! `strand serve`: a single-node broker. Settings come from flags, then `STRAND_*`
//! environment variables, then the `--config` TOML file, then the defaults.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use signal_hook::consts::{SIGINT, SIGTERM};
use strand_engine::{EngineConfig, FsyncPolicy, ShardSet};
use strand_net::NetConfig;
use strand_replication::NodeId;
use strand_replication::controller::Endpoint;
use strand_replication::host::{ControllerHost, HostConfig};

/// Flags of `strand serve`; each may also come from its `STRAND_*` variable.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Where clients connect [default: 127.0.0.1:9092]; port 0 picks a free port.
    #[arg(long, env = "STRAND_LISTEN", value_name = "HOST:PORT")]
    listen: Option<String>,
    /// The address given to clients in Metadata [default: the listen address].
    #[arg(long, env = "STRAND_ADVERTISED", value_name = "HOST:PORT")]
    advertised: Option<String>,
    /// Where topics and partitions are stored [default: ./strand-data].
    #[arg(long, env = "STRAND_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Shards, one pinned thread each [default: one per CPU].
    #[arg(long, env = "STRAND_CORES", value_name = "N")]
    cores: Option<usize>,
    /// A TOML file with any of: listen, advertised, data_dir, cores, no_fsync, metrics,
    /// auto_create_topics, default_partitions.
    #[arg(long, env = "STRAND_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Acknowledge writes without fdatasync: fast, and a crash loses recent messages.
    #[arg(long, env = "STRAND_NO_FSYNC")]
    no_fsync: bool,
    /// Where Prometheus scrapes GET /metrics [default: 127.0.0.1:9644]; `none` turns it off.
    #[arg(long, env = "STRAND_METRICS", value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// This node's id (Kafka's node.id) [default: 0].
    #[arg(long, env = "STRAND_NODE_ID", value_name = "N")]
    node_id: Option<u32>,
    /// Every node of the cluster with its internal address (controller and replication
    /// traffic), this node's included: `0=HOST:PORT,1=HOST:PORT,2=HOST:PORT`. Without it
    /// the broker is a single node.
    #[arg(long, env = "STRAND_PEERS", value_name = "ID=HOST:PORT,...")]
    peers: Option<String>,
    /// Where this node accepts the other nodes' connections [default: its own address in
    /// --peers].
    #[arg(long, env = "STRAND_INTERNAL_LISTEN", value_name = "HOST:PORT")]
    internal_listen: Option<String>,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    advertised: Option<String>,
    data_dir: Option<PathBuf>,
    cores: Option<usize>,
    no_fsync: Option<bool>,
    metrics: Option<String>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<u32>,
    node_id: Option<u32>,
    peers: Option<String>,
    internal_listen: Option<String>,
    /// How often each shard applies retention, rolls segments by age and looks for a
    /// partition to clean, in milliseconds [default: 30000].
    housekeeping_interval_ms: Option<u64>,
    /// The broker's topic defaults: Kafka broker keys (`log.retention.ms`,
    /// `log.retention.hours`, `log.cleanup.policy`, `log.segment.bytes`, ...) or topic keys
    /// (`retention.ms`), applied to every topic that does not set its own.
    topic_defaults: Option<BTreeMap<String, toml::Value>>,
}

/// Everything `serve` needs, merged.
#[derive(Debug)]
pub struct Settings {
    pub engine: EngineConfig,
    pub net: NetConfig,
    /// Where the Prometheus endpoint listens, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Set when this node is one of a cluster.
    pub cluster: Option<ClusterSettings>,
}

/// A cluster node's settings.
#[derive(Debug)]
pub struct ClusterSettings {
    pub node: NodeId,
    pub peers: BTreeMap<NodeId, String>,
    pub internal_listen: SocketAddr,
}

impl ServeArgs {
    /// The engine's settings: data directory, shards, fsync, housekeeping and the broker's
    /// topic defaults.
    fn engine_config(&self, file: &FileConfig) -> anyhow::Result<EngineConfig> {
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("strand-data"));
        let mut engine = EngineConfig::new(data_dir);
        if let Some(cores) = self.cores.or(file.cores) {
            engine.shard_count = cores;
        }
        if self.no_fsync || file.no_fsync == Some(true) {
            engine.fsync = FsyncPolicy::UnsafeNoFsync;
        }
        if let Some(interval) = file.housekeeping_interval_ms {
            engine.housekeeping_interval_ms = interval;
        }
        if let Some(defaults) = &file.topic_defaults {
            apply_topic_defaults(&mut engine.topic_defaults, defaults)
                .context("[topic_defaults] in the config file")?;
        }
        engine.validate().map_err(anyhow::Error::msg)?;
        Ok(engine)
    }

    /// Merges flags (and their environment variables) over the config file and defaults.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => read_config(path)?,
            None => FileConfig::default(),
        };
        let engine = self.engine_config(&file)?;
        let listen = self
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let listen = resolve(&listen).context("--listen")?;
        let listen = if listen.port() == 0 {
            free_port(listen)?
        } else {
            listen
        };
        let mut net = NetConfig::new(listen);
        if let Some(advertised) = self.advertised.clone().or(file.advertised) {
            let (host, port) = split_host_port(&advertised).context("--advertised")?;
            net.advertised_host = host;
            net.advertised_port = port;
        }
        if let Some(auto) = file.auto_create_topics {
            net.auto_create_topics = auto;
        }
        if let Some(partitions) = file.default_partitions {
            net.default_partitions = partitions;
        }
        net.validate().map_err(anyhow::Error::msg)?;
        net.topic_defaults = engine.topic_defaults.clone();
        net.data_dir = engine.data_dir.clone();
        let metrics = match self
            .metrics
            .clone()
            .or(file.metrics)
            .unwrap_or_else(|| "127.0.0.1:9644".into())
        {
            off if off == "none" => None,
            address => Some(resolve(&address).context("--metrics")?),
        };
        let node_id = self.node_id.or(file.node_id).unwrap_or(0);
        net.node_id = i32::try_from(node_id)
            .map_err(|_| anyhow::anyhow!("--node-id {node_id} is past {}", i32::MAX))?;
        let cluster = match self.peers.clone().or(file.peers) {
            None => {
                if self.internal_listen.is_some() || file.internal_listen.is_some() {
                    bail!(
                        "--internal-listen needs --peers (a single node has no internal traffic)"
                    );
                }
                None
            }
            Some(peers) => {
                let node = NodeId::new(node_id);
                let peers = parse_peers(&peers).context("--peers")?;
                let Some(own) = peers.get(&node) else {
                    bail!("--node-id {node_id} is not one of the nodes in --peers");
                };
                let internal = self
                    .internal_listen
                    .clone()
                    .or(file.internal_listen)
                    .unwrap_or_else(|| own.clone());
                let internal_listen = resolve(&internal).context("--internal-listen")?;
                if internal_listen.port() == net.listen.port()
                    && (internal_listen.ip() == net.listen.ip()
                        || internal_listen.ip().is_unspecified()
                        || net.listen.ip().is_unspecified())
                {
                    bail!("--internal-listen {internal_listen} is the Kafka listener's address");
                }
                Some(ClusterSettings {
                    node,
                    peers,
                    internal_listen,
                })
            }
        };
        Ok(Settings {
            engine,
            net,
            metrics,
            cluster,
        })
    }
}

/// `0=HOST:PORT,1=HOST:PORT,...`: every node's id and internal address.
fn parse_peers(text: &str) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut peers = BTreeMap::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let Some((id, address)) = entry.split_once('=') else {
            bail!("{entry:?} is not ID=HOST:PORT");
        };
        let id: u32 = id
            .trim()
            .parse()
            .with_context(|| format!("{id:?} in {entry:?} is not a node id"))?;
        if id > strand_net::cluster::NODE_ID_MAX {
            bail!(
                "node id {id} is past {} (a cluster's producer ids carry the node id)",
                strand_net::cluster::NODE_ID_MAX
            );
        }
        let address = address.trim();
        split_host_port(address).with_context(|| format!("{entry:?}"))?;
        if peers.insert(NodeId::new(id), address.to_owned()).is_some() {
            bail!("node {id} is given twice");
        }
    }
    if peers.is_empty() {
        bail!("no nodes given");
    }
    Ok(peers)
}

/// Sets each of `defaults` (a Kafka broker key or a topic key) on the broker's topic
/// defaults; hour and minute keys (`log.retention.hours`, `log.roll.hours`, ...) are turned
/// into the milliseconds their topic key counts.
fn apply_topic_defaults(
    config: &mut strand_engine::TopicConfig,
    defaults: &BTreeMap<String, toml::Value>,
) -> anyhow::Result<()> {
    use strand_engine::topic_config::{config_def, config_def_for_broker_key};
    for (key, value) in defaults {
        let text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map_or_else(|| item.to_string(), str::to_owned)
                })
                .collect::<Vec<_>>()
                .join(","),
            other => bail!("{key}: {other} is not a setting's value"),
        };
        let scale: i64 = if key.ends_with(".hours") {
            3_600_000
        } else if key.ends_with(".minutes") {
            60_000
        } else {
            1
        };
        let def = config_def(key)
            .or_else(|| config_def_for_broker_key(key))
            .with_context(|| format!("unknown topic default {key:?} (neither a Kafka broker key like log.retention.ms nor a topic key like retention.ms)"))?;
        let text = if scale == 1 {
            text
        } else {
            let amount: i64 = text
                .parse()
                .with_context(|| format!("{key}: {text:?} is not a whole number"))?;
            let millis = if amount < 0 {
                -1
            } else {
                amount.saturating_mul(scale)
            };
            millis.to_string()
        };
        config
            .set(def.key, &text)
            .map_err(|error| anyhow::anyhow!("{key}: {error}"))?;
    }
    Ok(())
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    address
        .to_socket_addrs()
        .with_context(|| format!("{address:?} is not a HOST:PORT address"))?
        .next()
        .with_context(|| format!("{address:?} resolves to no address"))
}

fn split_host_port(address: &str) -> anyhow::Result<(String, u16)> {
    let Some((host, port)) = address.rsplit_once(':') else {
        bail!("{address:?} is not HOST:PORT");
    };
    let port = port
        .parse()
        .with_context(|| format!("{port:?} in {address:?} is not a port number"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// Port 0: every shard must listen on the same port, so one is chosen here.
fn free_port(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    Ok(probe.local_addr()?)
}

/// Refuses a listen address another socket holds. Every shard binds it with SO_REUSEPORT,
/// which would otherwise let a second broker share the port and the kernel split clients
/// between the two.
fn ensure_port_free(listen: SocketAddr) -> anyhow::Result<()> {
    match TcpListener::bind(listen) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
            bail!("{listen} is already in use (another broker?)")
        }
        Err(error) => Err(error).with_context(|| format!("binding {listen}")),
    }
}

/// Runs the broker until SIGTERM or SIGINT, then shuts down cleanly.
pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let Settings {
        engine,
        mut net,
        metrics,
        cluster,
    } = args.settings()?;
    ensure_port_free(net.listen)?;
    let controller = match cluster {
        Some(cluster) => {
            let host = start_controller(cluster, &net, &engine.data_dir, engine.shard_count)?;
            net.cluster = Some(host.handle());
            Some(host)
        }
        None => None,
    };
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    let shards = engine.shard_count;
    let data_dir = engine.data_dir.clone();
    let (ready_tx, ready_rx) = flume::bounded(shards);
    let net = std::sync::Arc::new(net);
    let front_end_net = net.clone();
    let coordinators = strand_net::Coordinators::new(shards);
    let hub = strand_net::MetricsHub::new(shards);
    let front_end_hub = hub.clone();
    let set = ShardSet::start(engine, move |router| {
        let config = Rc::new((*front_end_net).clone());
        strand_net::serve(
            router,
            config,
            ready_tx.clone(),
            coordinators.clone(),
            front_end_hub.clone(),
        )
    })
    .context("starting the shards")?;
    for _ in 0..shards {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => {}
            Ok(Err(reason)) => {
                let _ = set.shutdown();
                bail!("{reason}");
            }
            Err(_) => {
                let _ = set.shutdown();
                bail!("a shard did not start listening within 30 s");
            }
        }
    }
    if let Some(address) = metrics {
        match crate::metrics_http::start(address, hub) {
            Ok(bound) => tracing::info!(%bound, "serving Prometheus metrics at /metrics"),
            Err(error) => {
                let _ = set.shutdown();
                return Err(error);
            }
        }
    }
    tracing::info!(
        listen = %net.listen,
        advertised = format!("{}:{}", net.advertised_host, net.advertised_port),
        shards,
        data_dir = %data_dir.display(),
        "strand is serving Kafka"
    );
    loop {
        if let Some(signal) = signals.pending().next() {
            tracing::info!(signal, "shutting down");
            break;
        }
        if !set.all_running() {
            let _ = set.shutdown();
            bail!("a shard stopped unexpectedly; see the log above");
        }
        if let Some(reason) = controller
            .as_ref()
            .and_then(|controller| controller.handle().chains().failure())
        {
            let _ = set.shutdown();
            bail!("replication failed, the node stops (restarted, it rejoins): {reason}");
        }
        if controller.as_ref().is_some_and(ControllerHost::has_stopped) {
            let _ = set.shutdown();
            let failure = controller.map(ControllerHost::stop);
            bail!("the controller stopped: {failure:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let summary = set.shutdown().context("shutting down")?;
    if let Some(controller) = controller {
        controller.stop().context("stopping the controller")?;
    }
    tracing::info!(?summary, "stopped");
    Ok(())
}

/// Binds the internal listener and starts this node's controller, its log under
/// `DATA_DIR/controller`.
fn start_controller(
    cluster: ClusterSettings,
    net: &NetConfig,
    data_dir: &Path,
    shards: usize,
) -> anyhow::Result<ControllerHost> {
    let listener = TcpListener::bind(cluster.internal_listen)
        .with_context(|| format!("binding the internal listener {}", cluster.internal_listen))?;
    let kafka = Endpoint {
        host: net.advertised_host.clone(),
        port: net.advertised_port,
    };
    let mut config = HostConfig::new(
        cluster.node,
        cluster.peers,
        kafka,
        data_dir.join("controller"),
    );
    config.shards = shards;
    tracing::info!(
        node = %cluster.node,
        internal = %cluster.internal_listen,
        "starting the controller"
    );
    ControllerHost::start(config, listener).context("starting the controller")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let command =
            Command::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))?;
        command.serve.settings()
    }

    #[test]
    fn flags_win_over_the_config_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("strand.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:19555\"\ncores = 1\ndata_dir = \"/tmp/from-file\"\nmetrics = \"none\"\ndefault_partitions = 3\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let from_file = settings(&["--config", path]).unwrap();
        assert_eq!(from_file.net.listen.port(), 19555);
        assert_eq!(from_file.engine.shard_count, 1);
        assert_eq!(from_file.engine.data_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(from_file.net.default_partitions, 3);
        assert!(from_file.metrics.is_none());
        let flagged = settings(&[
            "--config",
            path,
            "--listen",
            "127.0.0.1:19666",
            "--cores",
            "2",
        ])
        .unwrap();
        assert_eq!(flagged.net.listen.port(), 19666);
        assert_eq!(flagged.engine.shard_count, 2);
        assert_eq!(flagged.net.advertised_port, 19666);
        let defaults = settings(&["--metrics", "none"]).unwrap();
        assert_eq!(defaults.net.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(defaults.engine.data_dir, PathBuf::from("strand-data"));
    }

    #[test]
    fn cluster_flags_name_every_node_and_bad_ones_are_refused() {
        let peers = "0=127.0.0.1:19100, 1=127.0.0.1:19101,2=localhost:19102";
        let one = settings(&["--metrics", "none", "--node-id", "1", "--peers", peers]).unwrap();
        let cluster = one.cluster.unwrap();
        assert_eq!(cluster.node, NodeId::new(1));
        assert_eq!(cluster.peers.len(), 3);
        assert_eq!(cluster.peers[&NodeId::new(2)], "localhost:19102");
        assert_eq!(cluster.internal_listen.to_string(), "127.0.0.1:19101");
        assert_eq!(one.net.node_id, 1);
        let single = settings(&["--metrics", "none", "--node-id", "4"]).unwrap();
        assert!(single.cluster.is_none());
        assert_eq!(single.net.node_id, 4);
        let moved = settings(&["--peers", peers, "--internal-listen", "127.0.0.1:19200"]).unwrap();
        assert_eq!(
            moved.cluster.unwrap().internal_listen.to_string(),
            "127.0.0.1:19200"
        );
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/strand.toml");
        let deployed = settings(&["--config", shipped]).unwrap();
        assert_eq!(deployed.cluster.unwrap().peers.len(), 3);
        for (args, names) in [
            (
                &["--node-id", "3", "--peers", peers][..],
                "not one of the nodes",
            ),
            (&["--peers", "0=127.0.0.1:1,0=127.0.0.1:2"][..], "twice"),
            (&["--peers", "zero=127.0.0.1:1"][..], "not a node id"),
            (&["--peers", "0=127.0.0.1"][..], "HOST:PORT"),
            (&["--peers", "0:127.0.0.1:1"][..], "ID=HOST:PORT"),
            (&["--peers", ","][..], "no nodes"),
            (&["--internal-listen", "127.0.0.1:1"][..], "needs --peers"),
            (&["--node-id", "3000000000"][..], "past"),
            (
                &["--peers", "0=127.0.0.1:9092"][..],
                "is the Kafka listener's address",
            ),
        ] {
            let error = settings(args).err().unwrap();
            assert!(format!("{error:#}").contains(names), "{args:?}: {error:#}");
        }
    }

    #[test]
    fn bad_settings_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\nshards = 4\n").unwrap();
        let error = settings(&["--config", file.to_str().unwrap()])
            .err()
            .unwrap();
        assert!(format!("{error:#}").contains("shards"), "{error:#}");
        let error = settings(&["--listen", "nowhere"]).err().unwrap();
        assert!(format!("{error:#}").contains("nowhere"), "{error:#}");
        let error = settings(&["--advertised", "host-without-port"])
            .err()
            .unwrap();
        assert!(format!("{error:#}").contains("HOST:PORT"), "{error:#}");
    }
}
