//! Three controller nodes (`ControllerNode`) on a reliable in-memory network, with nodes
//! heartbeating to whichever node leads, as brokers will: the chain decisions the leader
//! makes from liveness and reports go through the Raft log and reach every node's state.

#![allow(clippy::unwrap_used)]

use strand_engine::Offset;
use strand_replication::NodeId;
use strand_replication::controller::{
    Command, ControllerConfig, ControllerNode, Endpoint, Heartbeat, HeartbeatAnswer, LogRecord,
    QuorumConfig, ReplicaReport, Timing, place,
};

const TICK_MS: u64 = 10;
const ELECTION_TICKS: usize = 10;
const LEASE_MS: u64 = 200;
const SILENCE_MS: u64 = 400;

struct Cluster {
    nodes: Vec<Option<ControllerNode>>,
    files: Vec<Vec<u8>>,
    /// Nodes whose broker heartbeats (not only their controller) are running.
    beating: Vec<bool>,
    now: u64,
    starts: u64,
}

fn node(id: usize) -> NodeId {
    NodeId::new(u32::try_from(id).unwrap())
}

fn endpoint(port: usize) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".to_owned(),
        port: u16::try_from(port).unwrap(),
    }
}

impl Cluster {
    fn new() -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            files: vec![Vec::new(); 3],
            beating: vec![true; 3],
            now: 0,
            starts: 0,
        };
        for id in 0..3 {
            cluster.nodes.push(None);
            cluster.start(id);
        }
        cluster
    }

    fn start(&mut self, id: usize) {
        self.starts += 1;
        let config = ControllerConfig {
            quorum: QuorumConfig {
                node: node(id),
                nodes: (0..3).map(node).collect(),
                election_ticks: ELECTION_TICKS,
                heartbeat_ticks: 2,
                log_entries_max: 1000,
                uncommitted_bytes_max: 1 << 20,
                incarnation: self.starts,
            },
            timing: Timing::new(LEASE_MS, SILENCE_MS),
            tick_ms: TICK_MS,
            decisions_per_tick_max: 16,
        };
        let records = LogRecord::decode_all(&self.files[id]).records;
        self.nodes[id] = Some(ControllerNode::new(config, records).unwrap());
    }

    fn kill(&mut self, id: usize) {
        self.nodes[id] = None;
        self.beating[id] = false;
    }

    fn leader(&self) -> Option<usize> {
        (0..3).find(|&id| {
            self.nodes[id]
                .as_ref()
                .is_some_and(|n| n.quorum().is_leader())
        })
    }

    /// Delivers every message until the network is quiet.
    fn pump(&mut self) {
        loop {
            let mut messages = Vec::new();
            for id in 0..3 {
                if let Some(controller) = self.nodes[id].as_mut() {
                    let out = controller.take_output();
                    let file = &mut self.files[id];
                    if out.rewrite {
                        file.clear();
                    }
                    for record in &out.records {
                        record.encode(file);
                    }
                    messages.extend(out.messages);
                }
            }
            if messages.is_empty() {
                return;
            }
            for (to, message) in messages {
                let to = usize::try_from(to.value()).unwrap();
                if let Some(controller) = self.nodes[to].as_mut() {
                    controller.quorum_mut().step(message).unwrap();
                }
            }
        }
    }

    /// One tick: every controller ticks, and every beating node heartbeats to the leader.
    fn tick(&mut self) {
        self.now += TICK_MS;
        for controller in self.nodes.iter_mut().flatten() {
            controller.tick(self.now);
        }
        self.pump();
        let Some(leader) = self.leader() else {
            return;
        };
        for id in 0..3 {
            if !self.beating[id] {
                continue;
            }
            let heartbeat = self.heartbeat(id);
            let leader_node = self.nodes[leader].as_mut().unwrap();
            if leader_node.heartbeat(&heartbeat, self.now) == HeartbeatAnswer::Unregistered {
                leader_node
                    .register(
                        node(id),
                        endpoint(9092 + id),
                        endpoint(19092 + id),
                        self.starts,
                    )
                    .unwrap();
            }
        }
        self.pump();
    }

    /// What node `id` reports: every replica durable and committed up to 100, and a head
    /// has committed in its current epoch.
    fn heartbeat(&self, id: usize) -> Heartbeat {
        let state = self.nodes[id].as_ref().unwrap().state();
        let mut reports = Vec::new();
        for (name, topic) in state.topics() {
            for (index, record) in topic.partitions.iter().enumerate() {
                let chain = &record.chain;
                if chain.attached(node(id)).is_none() {
                    continue;
                }
                let committed_in = if chain.head() == node(id) {
                    chain.epoch
                } else {
                    Default::default()
                };
                let report = ReplicaReport {
                    epoch: chain.epoch,
                    durable_end: Offset::new(100).unwrap(),
                    committed: Offset::new(100).unwrap(),
                    committed_in,
                };
                reports.push(((name.clone(), u32::try_from(index).unwrap()), report));
            }
        }
        Heartbeat {
            node: node(id),
            reports,
        }
    }

    fn run_until(&mut self, what: &str, limit_ms: u64, done: impl Fn(&Cluster) -> bool) -> u64 {
        let started = self.now;
        while !done(self) {
            assert!(
                self.now - started < limit_ms,
                "{what}: not within {limit_ms} ms"
            );
            self.tick();
        }
        self.now - started
    }

    /// The nodes node `id` has applied a fence of.
    fn fenced(&self, id: usize) -> Vec<u32> {
        let state = self.nodes[id].as_ref().unwrap().state();
        state
            .nodes()
            .iter()
            .filter(|(_, record)| record.fenced)
            .map(|(node, _)| node.value())
            .collect()
    }

    /// The members of every partition of `t`, as node `id` has applied them.
    fn chains(&self, id: usize) -> Vec<Vec<u32>> {
        let state = self.nodes[id].as_ref().unwrap().state();
        state.topic("t").map_or_else(Vec::new, |topic| {
            topic
                .partitions
                .iter()
                .map(|record| {
                    record
                        .chain
                        .members
                        .iter()
                        .map(|m| m.node.value())
                        .collect()
                })
                .collect()
        })
    }

    /// Waits for a leader with every node registered, then creates topic `t` with three
    /// partitions of three replicas.
    fn create_topic(&mut self) {
        self.run_until("a leader and three registrations", 3000, |c| {
            c.leader()
                .is_some_and(|l| c.nodes[l].as_ref().unwrap().state().nodes().len() == 3)
        });
        let leader = self.leader().unwrap();
        let controller = self.nodes[leader].as_mut().unwrap();
        let nodes: Vec<NodeId> = controller.state().nodes().keys().copied().collect();
        let chains = place(&nodes, 0, 3, 3).unwrap();
        controller
            .quorum_mut()
            .propose(&Command::CreateTopic {
                name: "t".to_owned(),
                id: [1; 16],
                replication_factor: 3,
                chains,
                configs: Vec::new(),
            })
            .unwrap();
        self.run_until("topic created everywhere", 1000, |c| {
            (0..3).all(|id| c.chains(id).len() == 3)
        });
    }
}

/// A node that goes silent is fenced and leaves every chain after the silence; restarted,
/// it registers (unfenced), attaches as the learner, and is promoted back once it reports
/// itself caught up. Every node applies the same chains.
#[test]
fn a_silent_node_leaves_every_chain_and_rejoins_at_the_tail() {
    let mut cluster = Cluster::new();
    cluster.create_topic();
    assert_eq!(
        cluster.chains(0),
        vec![vec![0, 1, 2], vec![1, 2, 0], vec![2, 0, 1]]
    );
    let leader = cluster.leader().unwrap();
    let victim = (leader + 1) % 3;
    let victim_u32 = u32::try_from(victim).unwrap();
    cluster.kill(victim);
    let waited = cluster.run_until("the silent node removed", 3000, |c| {
        c.chains(leader)
            .iter()
            .all(|chain| !chain.contains(&victim_u32))
    });
    assert!(waited > SILENCE_MS, "removed after {waited} ms of silence");
    cluster.run_until(
        "every live node applied the removal and the fence",
        1000,
        |c| {
            (0..3)
                .filter(|&id| c.nodes[id].is_some())
                .all(|id| c.chains(id) == c.chains(leader) && c.fenced(id) == vec![victim_u32])
        },
    );

    cluster.start(victim);
    cluster.beating[victim] = true;
    cluster.run_until("the node back in every chain", 3000, |c| {
        (0..3).all(|id| {
            c.chains(id).len() == 3
                && c.chains(id)
                    .iter()
                    .all(|chain| chain.len() == 3 && chain[2] == victim_u32)
        })
    });
    for id in 0..3 {
        assert!(cluster.fenced(id).is_empty(), "node {id} still fences");
        let registrations =
            cluster.nodes[id].as_ref().unwrap().state().nodes()[&node(victim)].registrations;
        assert_eq!(registrations, 2);
    }
}

/// A new leader knows nothing of the leases the old one granted: it removes the old
/// leader's node from chains only once every lease the old leader can have granted ended.
#[test]
fn a_new_leader_waits_out_the_leases_its_predecessor_granted() {
    let mut cluster = Cluster::new();
    cluster.create_topic();
    let old = cluster.leader().unwrap();
    let old_u32 = u32::try_from(old).unwrap();
    cluster.kill(old);
    cluster.run_until("a new leader", 3000, |c| c.leader().is_some());
    let elected_at = cluster.now;
    let new = cluster.leader().unwrap();
    cluster.run_until("the old leader's node removed", 5000, |c| {
        c.chains(new).iter().all(|chain| !chain.contains(&old_u32))
    });
    // The last lease the old leader may have granted ends within an election timeout and
    // a lease of the election.
    let grace =
        (u64::try_from(ELECTION_TICKS).unwrap() * TICK_MS + LEASE_MS).saturating_sub(SILENCE_MS);
    assert!(
        cluster.now - elected_at > grace + SILENCE_MS,
        "removed {} ms after the election",
        cluster.now - elected_at
    );
}

/// Every node stalls at once (a paused machine) for longer than the silence: the leader
/// starts liveness over instead of fencing every node, itself included.
#[test]
fn a_stall_of_the_whole_cluster_fences_nobody() {
    let mut cluster = Cluster::new();
    cluster.create_topic();
    let chains = cluster.chains(0);
    cluster.now += 3 * SILENCE_MS;
    for _ in 0..(2 * SILENCE_MS / TICK_MS) {
        cluster.tick();
    }
    for id in 0..3 {
        assert!(
            cluster.fenced(id).is_empty(),
            "node {id} fenced after a stall"
        );
        assert_eq!(cluster.chains(id), chains, "chains changed after a stall");
    }
}
