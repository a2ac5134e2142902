//! A deterministic simulation of the controller quorum: four nodes (three voters and a
//! Raft learner) running `Quorum` over a network that loses, duplicates, delays and
//! reorders messages, through crashes (a crash may tear the records being persisted),
//! restarts from the bytes of each node's log file, and pauses. The log is compacted every
//! few entries, so restarts and lagging nodes go through snapshots. Every seed checks:
//! - at most one leader per term;
//! - every node that has applied the log up to an index holds the same cluster state there
//!   (so the same commands were applied in the same order, through entries or snapshots);
//! - every command a proposer saw applied is in every node's final state;
//! - once the faults stop, a leader is elected and a new proposal is applied everywhere.
//!
//! `QSIM_SEED=N` replays one seed; `QSIM_SEEDS=N` runs N seeds (default 150), stopping
//! after `QSIM_SECONDS` (default 60).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strand_replication::NodeId;
use strand_replication::controller::{
    Applied, ClusterState, Command, Endpoint, LogRecord, Quorum, QuorumConfig, decode_message,
    encode_message,
};
use support::env_number;

const NODES: u32 = 4;
const FAULT_STEPS: u64 = 6_000;
const HEAL_STEPS: u64 = 4_000;
/// Steps per quorum tick.
const TICK_STEPS: u64 = 10;

#[test]
fn the_controller_log_agrees_through_crashes_pauses_and_a_lossy_network() {
    if let Some(seed) = env_number("QSIM_SEED") {
        let seen = QuorumSim::new(seed).run();
        eprintln!("seed {seed}: {seen:?}");
        return;
    }
    let number = |name: &str, default: u64| env_number(name).unwrap_or(default);
    let seeds = number("QSIM_SEEDS", 150);
    let budget = Duration::from_secs(number("QSIM_SECONDS", 60));
    let started = Instant::now();
    let mut ran = 0;
    let mut seen = Seen::default();
    for seed in 0..seeds {
        if started.elapsed() > budget {
            break;
        }
        match std::panic::catch_unwind(|| QuorumSim::new(seed).run()) {
            Ok(one) => seen.add(&one),
            Err(_) => panic!("seed {seed} failed; replay it with QSIM_SEED={seed}"),
        }
        ran += 1;
    }
    assert!(ran > 0, "no seed ran within the time budget");
    eprintln!("{ran} seeds in {:.1?}: {seen:?}", started.elapsed());
    // The faults the checks are meant to survive did happen.
    assert!(seen.crashes > 0 && seen.torn_appends > 0, "{seen:?}");
    assert!(
        seen.snapshots_sent > 0 && seen.leader_terms > ran,
        "{seen:?}"
    );
}

struct Node {
    id: NodeId,
    quorum: Option<Quorum>,
    /// The log file's bytes; a rewrite replaces them atomically.
    file: Vec<u8>,
    paused_until: u64,
    down_until: u64,
    incarnation: u64,
    checked_index: u64,
}

/// What the faults and the quorum did, summed over seeds.
#[derive(Debug, Default)]
struct Seen {
    crashes: u64,
    torn_appends: u64,
    snapshots_sent: u64,
    leader_terms: u64,
}

impl Seen {
    fn add(&mut self, other: &Seen) {
        self.crashes += other.crashes;
        self.torn_appends += other.torn_appends;
        self.snapshots_sent += other.snapshots_sent;
        self.leader_terms += other.leader_terms;
    }
}

struct InFlight {
    at: u64,
    to: usize,
    bytes: Vec<u8>,
}

struct QuorumSim {
    seed: u64,
    rng: StdRng,
    nodes: Vec<Node>,
    network: Vec<InFlight>,
    now: u64,
    leaders: BTreeMap<u64, NodeId>,
    /// The cluster state after applying the log up to an index, as the first node to get
    /// there held it.
    states: BTreeMap<u64, Vec<u8>>,
    /// Topics whose creation a proposer saw applied.
    acknowledged: BTreeSet<String>,
    topics_proposed: u64,
    seen: Seen,
}

impl QuorumSim {
    fn new(seed: u64) -> QuorumSim {
        let mut sim = QuorumSim {
            seed,
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            network: Vec::new(),
            now: 0,
            leaders: BTreeMap::new(),
            states: BTreeMap::new(),
            acknowledged: BTreeSet::new(),
            topics_proposed: 0,
            seen: Seen::default(),
        };
        for id in 0..NODES {
            let mut node = Node {
                id: NodeId::new(id),
                quorum: None,
                file: Vec::new(),
                paused_until: 0,
                down_until: 0,
                incarnation: 0,
                checked_index: 0,
            };
            sim.start(&mut node);
            sim.nodes.push(node);
        }
        sim
    }

    fn config(&self, node: &Node) -> QuorumConfig {
        QuorumConfig {
            node: node.id,
            nodes: (0..NODES).map(NodeId::new).collect(),
            election_ticks: 10,
            heartbeat_ticks: 2,
            log_entries_max: 12,
            uncommitted_bytes_max: 1 << 20,
            incarnation: node.incarnation,
        }
    }

    fn start(&self, node: &mut Node) {
        node.incarnation += 1;
        let replayed = LogRecord::decode_all(&node.file);
        node.file.truncate(replayed.valid_len);
        let quorum = Quorum::new(&self.config(node), replayed.records).unwrap_or_else(|error| {
            panic!("seed {}: {} cannot start: {error}", self.seed, node.id)
        });
        node.quorum = Some(quorum);
    }

    fn run(mut self) -> Seen {
        while self.now < FAULT_STEPS {
            self.faults();
            self.step();
        }
        for node in &mut self.nodes {
            node.paused_until = 0;
        }
        let down: Vec<usize> = (0..self.nodes.len())
            .filter(|&at| self.nodes[at].quorum.is_none())
            .collect();
        for at in down {
            let mut node = std::mem::replace(&mut self.nodes[at], placeholder());
            self.start(&mut node);
            self.nodes[at] = node;
        }
        // A client whose proposal a leader change dropped proposes again.
        let heal_end = self.now + HEAL_STEPS;
        let mut final_topic = None;
        while self.now < heal_end {
            self.step();
            let retry = self.now.is_multiple_of(300) && self.now + HEAL_STEPS / 2 < heal_end;
            let done = final_topic
                .as_ref()
                .is_some_and(|topic| self.acknowledged.contains(topic));
            if retry && !done {
                final_topic = self.propose_topic().or(final_topic);
            }
        }
        self.check_final(final_topic);
        self.seen.leader_terms = u64::try_from(self.leaders.len()).unwrap();
        self.seen
    }

    fn faults(&mut self) {
        let roll: f64 = self.rng.r#gen();
        let at = self.rng.gen_range(0..self.nodes.len());
        if roll < 0.0008 && self.nodes[at].quorum.is_some() {
            self.seen.crashes += 1;
            self.nodes[at].quorum = None;
            self.nodes[at].down_until = self.now + self.rng.gen_range(50..800);
        } else if roll < 0.0016 {
            self.nodes[at].paused_until = self.now + self.rng.gen_range(50..600);
        }
        if roll < 0.05 {
            self.propose_topic();
        }
    }

    fn step(&mut self) {
        self.now += 1;
        for at in 0..self.nodes.len() {
            if self.nodes[at].quorum.is_none() && self.now >= self.nodes[at].down_until {
                let mut node = std::mem::replace(&mut self.nodes[at], placeholder());
                self.start(&mut node);
                self.nodes[at] = node;
            }
        }
        self.deliver();
        for at in 0..self.nodes.len() {
            let awake = self.nodes[at].paused_until <= self.now;
            if let Some(quorum) = self.nodes[at].quorum.as_mut()
                && awake
                && self.now.is_multiple_of(TICK_STEPS)
            {
                quorum.tick();
            }
            if awake {
                self.drain(at);
            }
        }
        self.check_leaders();
    }

    fn deliver(&mut self) {
        let now = self.now;
        let mut due = Vec::new();
        self.network.retain(|message| {
            if message.at <= now {
                due.push((message.to, message.bytes.clone()));
                false
            } else {
                true
            }
        });
        for (to, bytes) in due {
            let node = &mut self.nodes[to];
            if node.paused_until > now {
                // A paused node reads its socket later.
                self.network.push(InFlight {
                    at: node.paused_until,
                    to,
                    bytes,
                });
                continue;
            }
            if let Some(quorum) = node.quorum.as_mut() {
                let message = decode_message(&bytes).unwrap();
                quorum.step(message).unwrap();
            }
        }
    }

    /// Runs a node's ready cycle: persist, maybe crash while doing it, then send.
    fn drain(&mut self, at: usize) {
        let Some(quorum) = self.nodes[at].quorum.as_mut() else {
            return;
        };
        let out = quorum.take_output();
        let mut bytes = Vec::new();
        for record in &out.records {
            record.encode(&mut bytes);
        }
        if !bytes.is_empty() && self.rng.gen_bool(0.002) {
            // A crash while persisting: an append leaves a torn prefix, a rewrite nothing
            // (it goes to a new file renamed into place). Nothing was sent.
            self.seen.crashes += 1;
            if !out.rewrite {
                self.seen.torn_appends += 1;
                let keep = self.rng.gen_range(0..bytes.len());
                self.nodes[at].file.extend_from_slice(&bytes[..keep]);
            }
            self.nodes[at].quorum = None;
            self.nodes[at].down_until = self.now + self.rng.gen_range(20..300);
            return;
        }
        if out.rewrite {
            self.nodes[at].file = bytes;
        } else {
            self.nodes[at].file.extend_from_slice(&bytes);
        }
        for entry in &out.applied {
            if entry.proposal.is_some()
                && let Ok(Applied::TopicCreated { name, .. }) = &entry.outcome
            {
                self.acknowledged.insert(name.clone());
            }
        }
        self.check_state(at);
        for (peer, message) in out.messages {
            if message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                self.seen.snapshots_sent += 1;
            }
            let to = usize::try_from(peer.value()).unwrap();
            let bytes = encode_message(&message);
            if self.rng.gen_bool(0.05) {
                continue;
            }
            let copies = if self.rng.gen_bool(0.02) { 2 } else { 1 };
            for _ in 0..copies {
                let delay = if self.rng.gen_bool(0.1) {
                    self.rng.gen_range(10..200)
                } else {
                    self.rng.gen_range(1..5)
                };
                self.network.push(InFlight {
                    at: self.now + delay,
                    to,
                    bytes: bytes.clone(),
                });
            }
        }
    }

    /// Proposes a new topic at a leader, if there is one; returns its name.
    fn propose_topic(&mut self) -> Option<String> {
        let now = self.now;
        let leader = self.nodes.iter_mut().find(|node| {
            node.paused_until <= now && node.quorum.as_ref().is_some_and(Quorum::is_leader)
        })?;
        let quorum = leader.quorum.as_mut()?;
        let state = quorum.state();
        let mut registered: Vec<NodeId> = state.nodes().keys().copied().collect();
        if registered.len() < usize::try_from(NODES).unwrap() {
            let node = NodeId::new(u32::try_from(registered.len()).unwrap());
            let port = u16::try_from(9000 + registered.len()).unwrap();
            let endpoint = Endpoint {
                host: "127.0.0.1".to_owned(),
                port,
            };
            let command = Command::RegisterNode {
                node,
                kafka: endpoint.clone(),
                internal: endpoint,
                incarnation: 1,
            };
            quorum.propose(&command).ok()?;
            return None;
        }
        registered.truncate(2);
        self.topics_proposed += 1;
        let name = format!("topic-{}", self.topics_proposed);
        let command = Command::CreateTopic {
            name: name.clone(),
            id: [0; 16],
            replication_factor: 2,
            chains: vec![registered],
            configs: Vec::new(),
        };
        quorum.propose(&command).ok().map(|_| name)
    }

    fn check_leaders(&mut self) {
        for node in &self.nodes {
            if let Some(quorum) = &node.quorum
                && quorum.is_leader()
            {
                let leader = *self.leaders.entry(quorum.term()).or_insert(node.id);
                assert_eq!(
                    leader,
                    node.id,
                    "seed {}: two leaders in term {}",
                    self.seed,
                    quorum.term()
                );
            }
        }
    }

    fn check_state(&mut self, at: usize) {
        let index = self.nodes[at].quorum.as_ref().unwrap().applied_index();
        if index == 0 || index == self.nodes[at].checked_index {
            return;
        }
        self.nodes[at].checked_index = index;
        let quorum = self.nodes[at].quorum.as_ref().unwrap();
        let state = quorum.state().encode();
        let agreed = self.states.entry(index).or_insert_with(|| state.clone());
        assert!(
            *agreed == state,
            "seed {}: {} holds another cluster state at index {index}: {:?}",
            self.seed,
            self.nodes[at].id,
            quorum.state()
        );
    }

    fn check_final(&self, final_topic: Option<String>) {
        if std::env::var("QSIM_TRACE").is_ok() {
            for node in &self.nodes {
                let q = node.quorum.as_ref().unwrap();
                eprintln!(
                    "{:?} applied {} topics {}",
                    q,
                    q.applied_index(),
                    q.state().topics().len()
                );
            }
            eprintln!("final {final_topic:?} in flight {}", self.network.len());
        }
        let final_topic = final_topic
            .filter(|topic| self.acknowledged.contains(topic))
            .unwrap_or_else(|| {
                panic!(
                    "seed {}: no proposal was applied after the faults",
                    self.seed
                )
            });
        let states: Vec<&ClusterState> = self
            .nodes
            .iter()
            .map(|node| node.quorum.as_ref().unwrap().state())
            .collect();
        for (node, state) in self.nodes.iter().zip(&states) {
            assert_eq!(
                *state, states[0],
                "seed {}: {} ended with another state",
                self.seed, node.id
            );
            assert!(
                state.topic(&final_topic).is_some(),
                "seed {}: {} never applied {final_topic} after the faults",
                self.seed,
                node.id
            );
            for topic in &self.acknowledged {
                assert!(
                    state.topic(topic).is_some(),
                    "seed {}: acknowledged {topic} is missing on {}",
                    self.seed,
                    node.id
                );
            }
        }
    }
}

fn placeholder() -> Node {
    Node {
        id: NodeId::new(u32::MAX),
        quorum: None,
        file: Vec::new(),
        paused_until: 0,
        down_until: u64::MAX,
        incarnation: 0,
        checked_index: 0,
    }
}
