//! Three controller hosts on loopback, each with its own log directory and real TCP links:
//! they elect a leader, every node registers and holds a lease; a stopped node is fenced
//! by the others (after a new election if it led), and started again over its log it
//! registers again and is unfenced.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strand_replication::NodeId;
use strand_replication::controller::{ControllerConfig, Endpoint, QuorumConfig, Timing};
use strand_replication::host::{ClusterView, ControllerHost, HostConfig};

const TICK_MS: u64 = 10;

struct Node {
    config: HostConfig,
    host: Option<ControllerHost>,
}

struct Cluster {
    nodes: Vec<Node>,
    root: PathBuf,
    starts: u64,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.host = None;
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Cluster {
    fn new() -> Cluster {
        let root = std::env::temp_dir().join(format!(
            "strand-controller-host-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let listeners: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let peers: BTreeMap<NodeId, String> = listeners
            .iter()
            .enumerate()
            .map(|(id, listener)| (node(id), listener.local_addr().unwrap().to_string()))
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            root: root.clone(),
            starts: 0,
        };
        for (id, listener) in listeners.into_iter().enumerate() {
            let config = HostConfig {
                node: node(id),
                peers: peers.clone(),
                kafka: Endpoint {
                    host: "127.0.0.1".to_owned(),
                    port: 9092 + u16::try_from(id).unwrap(),
                },
                dir: root.join(format!("node-{id}")),
                chains_dir: root.join(format!("chains-{id}")),
                shards: 1,
                controller: ControllerConfig {
                    quorum: QuorumConfig {
                        node: node(id),
                        nodes: peers.keys().copied().collect(),
                        election_ticks: 10,
                        heartbeat_ticks: 2,
                        log_entries_max: 64,
                        uncommitted_bytes_max: 1 << 20,
                        incarnation: 0,
                    },
                    timing: Timing::new(200, 400),
                    tick_ms: TICK_MS,
                    decisions_per_tick_max: 16,
                },
                heartbeat_ms: 50,
            };
            cluster.nodes.push(Node { config, host: None });
            cluster.start(id, listener);
        }
        cluster
    }

    fn start(&mut self, id: usize, listener: TcpListener) {
        self.starts += 1;
        let node = &mut self.nodes[id];
        node.config.controller.quorum.incarnation = self.starts;
        node.host = Some(ControllerHost::start(node.config.clone(), listener).unwrap());
    }

    fn restart(&mut self, id: usize) {
        let address = &self.nodes[id].config.peers[&node(id)];
        let listener = TcpListener::bind(address).unwrap();
        self.start(id, listener);
    }

    fn stop(&mut self, id: usize) {
        self.nodes[id].host.take().unwrap().stop().unwrap();
    }

    fn view(&self, id: usize) -> Option<std::sync::Arc<ClusterView>> {
        self.nodes[id]
            .host
            .as_ref()
            .map(|host| host.handle().view())
    }

    fn running(&self) -> Vec<usize> {
        (0..3).filter(|&id| self.nodes[id].host.is_some()).collect()
    }

    /// Waits until `done` holds for the views of every running node.
    fn wait_for(&self, what: &str, done: impl Fn(&ClusterView) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            for id in self.running() {
                assert!(
                    !self.nodes[id].host.as_ref().unwrap().has_stopped(),
                    "node {id}'s controller stopped"
                );
            }
            if self
                .running()
                .iter()
                .all(|&id| done(&self.view(id).unwrap()))
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what}: not within 20 s; views: {:#?}",
                self.running()
                    .iter()
                    .map(|&id| self.view(id).unwrap())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The leader every running node agrees on, if they agree.
    fn agreed_leader(&self) -> Option<NodeId> {
        let leaders: Vec<Option<NodeId>> = self
            .running()
            .iter()
            .map(|&id| self.view(id).unwrap().leader)
            .collect();
        leaders
            .windows(2)
            .all(|pair| pair[0] == pair[1])
            .then(|| leaders[0])
            .flatten()
    }
}

fn node(id: usize) -> NodeId {
    NodeId::new(u32::try_from(id).unwrap())
}

fn index(node: NodeId) -> usize {
    usize::try_from(node.value()).unwrap()
}

/// Registered, holding a usable lease, with every node registered and none fenced.
fn settled(view: &ClusterView, registrations: &[u64; 3]) -> bool {
    view.registered
        && view.lease_until.is_some_and(|until| until > Instant::now())
        && view.connected.len() == 2
        && (0..3).all(|id| {
            view.state
                .nodes()
                .get(&node(id))
                .is_some_and(|record| !record.fenced && record.registrations == registrations[id])
        })
}

#[test]
fn three_hosts_elect_register_fence_a_stopped_node_and_take_it_back() {
    let mut cluster = Cluster::new();
    cluster.wait_for("a leader, three registrations and leases", |view| {
        settled(view, &[1, 1, 1])
    });
    let leader = cluster.agreed_leader().expect("one leader");
    let view = cluster.view(0).unwrap();
    assert_eq!(
        view.state.nodes()[&node(2)].internal.port,
        cluster.nodes[2].config.peers[&node(2)]
            .rsplit_once(':')
            .unwrap()
            .1
            .parse::<u16>()
            .unwrap()
    );

    // The leader goes away: the others elect one of themselves and fence it.
    let stopped = index(leader);
    cluster.stop(stopped);
    cluster.wait_for("a new leader that fenced the stopped node", |view| {
        view.leader.is_some_and(|l| l != leader)
            && view.state.nodes()[&leader].fenced
            && view.lease_until.is_some()
    });
    assert!(cluster.agreed_leader().is_some_and(|l| l != leader));

    // Started again over its log, it registers a second time and is unfenced.
    cluster.restart(stopped);
    let mut registrations = [1, 1, 1];
    registrations[stopped] = 2;
    cluster.wait_for("the restarted node registered again", |view| {
        settled(view, &registrations)
    });

    // A follower goes away and comes back too.
    let follower = (0..3)
        .find(|&id| Some(node(id)) != cluster.agreed_leader())
        .unwrap();
    cluster.stop(follower);
    cluster.wait_for("the follower fenced", |view| {
        view.state.nodes()[&node(follower)].fenced
    });
    cluster.restart(follower);
    registrations[follower] += 1;
    cluster.wait_for("the follower back", |view| settled(view, &registrations));
}
