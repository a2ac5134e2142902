//! A deterministic simulation of one partition's chain on three nodes: random crashes (the
//! unsynced tail of a log is partly lost), restarts, pauses longer than the lease, message
//! loss, reordering and delay, driven through the pure `Replica` core. Every seed checks:
//! - every offset a head reported committed holds the same entry on every node that ever
//!   reported it committed, and on every member of the final chain;
//! - a head reports `Committed` only while it is a member of the controller's chain (a
//!   paused, removed head acknowledges nothing), and its reports never go back;
//! - once the faults stop, appends commit again.
//!
//! The controller is the crate's own `ChainKeeper` with `Liveness`, fed by lossy
//! heartbeats that report each replica's epoch, durable end and committed offset; their
//! answers grant the lease and carry the current chain. A restarted node registers before
//! it acts.
//!
//! `SIM_SEED=N` replays one seed (`SIM_TRACE=1` logs its events, `SIM_TRACE=sends` its
//! messages too); `SIM_SEEDS=N` runs N seeds from `SIM_SEED_FIRST` (default 2,000 from 0),
//! stopping after `SIM_SECONDS` (default 60).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strand_engine::Offset;
use strand_replication::chain::{Action, Chain, Entry, Envelope, Limits, Recovered, Replica};
use strand_replication::controller::{ChainKeeper, Liveness, ReplicaReport, Timing};
use strand_replication::{ChainEpoch, NodeId};
use support::env_number;

const NODES: usize = 3;
const FAULT_TICKS: u64 = 1500;
const HEAL_TICKS: u64 = 1500;
const LEASE_TICKS: u64 = 10;
const SILENCE_TICKS: u64 = 2 * LEASE_TICKS;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    id: u64,
    len: u64,
    epoch: ChainEpoch,
}

impl Entry for Item {
    fn offsets(&self) -> u64 {
        self.len
    }

    fn epoch(&self) -> ChainEpoch {
        self.epoch
    }

    fn set_epoch(&mut self, epoch: ChainEpoch) {
        self.epoch = epoch;
    }

    fn bytes(&self) -> usize {
        usize::try_from(self.len).expect("small entries")
    }
}

#[test]
fn acknowledged_offsets_survive_crashes_pauses_and_a_lossy_network() {
    if let Some(seed) = env_number("SIM_SEED") {
        Sim::new(seed).run();
        return;
    }
    let number = |name: &str, default: u64| env_number(name).unwrap_or(default);
    let (first, seeds) = (number("SIM_SEED_FIRST", 0), number("SIM_SEEDS", 2000));
    let budget = Duration::from_secs(number("SIM_SECONDS", 60));
    let started = Instant::now();
    let mut ran = 0;
    for seed in first..first + seeds {
        if started.elapsed() > budget {
            break;
        }
        let outcome = std::panic::catch_unwind(|| Sim::new(seed).run());
        if outcome.is_err() {
            panic!("seed {seed} failed; replay it with SIM_SEED={seed}");
        }
        ran += 1;
    }
    assert!(ran >= seeds.min(200), "only {ran} seeds ran in {budget:?}");
    eprintln!("{ran} seeds passed in {:?}", started.elapsed());
}

/// One node's log on its disk: entries, how many are durable, and what the last sync stored.
#[derive(Debug, Default)]
struct Disk {
    entries: Vec<(Offset, Item)>,
    durable: usize,
    committed: Offset,
    attached_epoch: Option<ChainEpoch>,
}

impl Disk {
    fn log_end(&self) -> Offset {
        self.entries
            .last()
            .map_or(Offset::ZERO, |(start, item)| start.plus(item.len))
    }

    fn append(&mut self, start: Offset, entries: Vec<Item>) {
        assert_eq!(start, self.log_end(), "appends go to the log end");
        let mut at = start;
        for item in entries {
            let len = item.len;
            self.entries.push((at, item));
            at = at.plus(len);
        }
    }

    fn sync(&mut self, end: Offset, committed: Offset, attached_epoch: Option<ChainEpoch>) {
        let durable = self.durable.min(self.entries.len());
        let covered = self.entries[durable..]
            .iter()
            .take_while(|(start, item)| start.plus(item.len) <= end)
            .count();
        self.durable = durable + covered;
        self.committed = committed;
        self.attached_epoch = attached_epoch;
    }

    fn truncate(&mut self, end: Offset) {
        self.entries.retain(|(start, _)| *start < end);
        assert!(self.log_end() <= end, "truncation on an entry boundary");
        self.durable = self.durable.min(self.entries.len());
    }

    /// A crash: durable entries stay, and some of the rest happened to reach the disk.
    fn crash(&mut self, rng: &mut StdRng) {
        let kept = rng.gen_range(self.durable..=self.entries.len());
        self.entries.truncate(kept);
        self.durable = kept;
    }

    /// What a restarted node reads back.
    fn recovered(&self) -> Recovered {
        let mut log_epochs: Vec<(ChainEpoch, Offset)> = Vec::new();
        for (start, item) in &self.entries {
            if log_epochs
                .last()
                .is_none_or(|(epoch, _)| *epoch != item.epoch)
            {
                log_epochs.push((item.epoch, *start));
            }
        }
        Recovered {
            log_end: self.log_end(),
            log_epochs,
            committed: self.committed,
            attached_epoch: self.attached_epoch,
        }
    }

    fn read(&self, start: Offset) -> Vec<Item> {
        let from = self.entries.partition_point(|(at, _)| *at < start);
        self.entries[from..]
            .iter()
            .take(16)
            .map(|(_, item)| item.clone())
            .collect()
    }

    fn at(&self, offset: Offset) -> Option<&Item> {
        let at = self.entries.partition_point(|(start, _)| *start < offset);
        self.entries
            .get(at)
            .filter(|(start, _)| *start == offset)
            .map(|(_, item)| item)
    }
}

#[derive(Debug)]
struct Node {
    id: NodeId,
    replica: Option<Replica<Item>>,
    disk: Disk,
    down_until: Option<u64>,
    paused_until: Option<u64>,
    /// When the controller last answered this node's heartbeat.
    last_contact: u64,
    syncs: Vec<(u64, Offset, Offset, Option<ChainEpoch>)>,
    /// The last `Committed` this incarnation reported.
    committed_reported: Offset,
    /// Entries of this node's log already checked against `Sim::committed`.
    checked_entries: usize,
}

impl Node {
    fn running(&self) -> bool {
        self.replica.is_some() && self.paused_until.is_none()
    }
}

/// The controller: the crate's own state machine, fed by heartbeats.
struct Controller {
    keeper: ChainKeeper,
    liveness: Liveness,
    changed: bool,
}

struct Sim {
    rng: StdRng,
    now: u64,
    nodes: Vec<Node>,
    controller: Controller,
    network: Vec<(u64, Envelope<Item>)>,
    configs: Vec<(u64, usize, Chain)>,
    next_id: u64,
    /// Every offset ever reported committed, with its entry.
    committed: BTreeMap<Offset, Item>,
    limits: Limits,
    first_heal_append: Option<u64>,
    trace: bool,
    trace_sends: bool,
}

fn node_id(index: usize) -> NodeId {
    NodeId::new(u32::try_from(index).unwrap() + 1)
}

fn index_of(node: NodeId) -> usize {
    usize::try_from(node.value()).unwrap() - 1
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let limits = Limits {
            window_entries_max: rng.gen_range(4..64),
            message_entries_max: rng.gen_range(1..8),
            message_bytes_max: rng.gen_range(1..4),
            resend_ticks: rng.gen_range(2..6),
        };
        let ids: Vec<NodeId> = (0..NODES).map(node_id).collect();
        let keeper = ChainKeeper::new(&ids);
        let chain = keeper.chain().clone();
        let nodes = (0..NODES)
            .map(|index| {
                let mut replica = Replica::new(node_id(index), limits);
                replica.reconfigure(chain.clone());
                replica.set_lease(true);
                Node {
                    id: node_id(index),
                    replica: Some(replica),
                    disk: Disk::default(),
                    down_until: None,
                    paused_until: None,
                    last_contact: 0,
                    syncs: Vec::new(),
                    committed_reported: Offset::ZERO,
                    checked_entries: 0,
                }
            })
            .collect();
        let mut sim = Sim {
            rng,
            now: 0,
            nodes,
            controller: Controller {
                keeper,
                liveness: Liveness::new(Timing::new(LEASE_TICKS, SILENCE_TICKS), &ids, 0),
                changed: false,
            },
            network: Vec::new(),
            configs: Vec::new(),
            next_id: 0,
            committed: BTreeMap::new(),
            limits,
            first_heal_append: None,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            trace_sends: std::env::var("SIM_TRACE").is_ok_and(|level| level == "sends"),
        };
        for index in 0..NODES {
            sim.drain(index);
        }
        sim
    }

    fn note(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("t={} {}", self.now, what());
        }
    }

    fn faulty(&self) -> bool {
        self.now < FAULT_TICKS
    }

    fn run(mut self) {
        while self.now < FAULT_TICKS + HEAL_TICKS {
            self.now += 1;
            if self.faulty() {
                self.inject_faults();
            }
            self.wake_nodes();
            self.heartbeats();
            self.control();
            self.deliver();
            self.complete_syncs();
            self.client();
            for index in 0..NODES {
                if self.nodes[index].running() {
                    self.nodes[index].replica.as_mut().unwrap().tick();
                    self.drain(index);
                }
            }
        }
        self.check_end();
    }

    fn inject_faults(&mut self) {
        let index = self.rng.gen_range(0..NODES);
        let roll: f64 = self.rng.r#gen();
        let node = &mut self.nodes[index];
        if node.replica.is_none() || node.paused_until.is_some() {
            return;
        }
        if roll < 0.004 {
            node.replica = None;
            node.syncs.clear();
            node.disk.crash(&mut self.rng);
            node.down_until = Some(self.now + self.rng.gen_range(5..80));
            let (id, end) = (node.id, node.disk.log_end());
            self.note(|| format!("{id} crashes; its disk keeps {end}"));
        } else if roll < 0.008 {
            node.paused_until = Some(self.now + self.rng.gen_range(5..60));
            let id = node.id;
            self.note(|| format!("{id} pauses"));
        }
    }

    fn wake_nodes(&mut self) {
        for index in 0..NODES {
            let now = self.now;
            let node = &mut self.nodes[index];
            if node.down_until.is_some_and(|until| until <= now) {
                node.down_until = None;
                let epoch_min = self.controller.keeper.register(node.id);
                self.controller.changed = true;
                node.replica = Some(Replica::recover(
                    node.id,
                    self.limits,
                    node.disk.recovered(),
                    epoch_min,
                ));
                node.last_contact = 0;
                node.committed_reported = Offset::ZERO;
                node.checked_entries = 0;
                let (id, end) = (node.id, node.disk.log_end());
                let (committed, epoch) = (node.disk.committed, node.disk.attached_epoch);
                self.note(|| format!("{id} restarts at {end}, committed {committed}, {epoch:?}"));
                self.drain(index);
            }
            let node = &mut self.nodes[index];
            if node.paused_until.is_some_and(|until| until <= now) {
                node.paused_until = None;
                if self.trace {
                    eprintln!("t={now} {} resumes", node.id);
                }
                // The first thing a paused node learns: its lease is long gone.
                let valid = now - node.last_contact <= LEASE_TICKS;
                node.replica.as_mut().unwrap().set_lease(valid);
                self.drain(index);
            }
        }
    }

    fn heartbeats(&mut self) {
        for index in 0..NODES {
            if !self.nodes[index].running() {
                continue;
            }
            let loss = if self.faulty() { 0.1 } else { 0.0 };
            if self.rng.gen_bool(1.0 - loss) {
                let replica = self.nodes[index].replica.as_ref().unwrap();
                let report = ReplicaReport {
                    epoch: replica.chain().map(|c| c.epoch).unwrap_or_default(),
                    durable_end: replica.durable_end(),
                    committed: replica.committed(),
                    committed_in: replica.committed_in(),
                };
                self.controller.liveness.heard(node_id(index), self.now);
                self.controller.keeper.report(node_id(index), report);
                if self.rng.gen_bool(1.0 - loss) {
                    // The answer grants the lease and carries the current chain, so a
                    // node never holds a lease over a chain it has not seen.
                    self.nodes[index].last_contact = self.now;
                    let chain = self.controller.keeper.chain().clone();
                    self.nodes[index]
                        .replica
                        .as_mut()
                        .unwrap()
                        .reconfigure(chain);
                }
            }
            let valid = self.now - self.nodes[index].last_contact <= LEASE_TICKS;
            self.nodes[index].replica.as_mut().unwrap().set_lease(valid);
            self.drain(index);
        }
    }

    /// The controller decides, and sends its chain to every node now and then.
    fn control(&mut self) {
        let now = self.now;
        let ids: Vec<NodeId> = (0..NODES).map(node_id).collect();
        let controller = &mut self.controller;
        if controller.keeper.decide(&controller.liveness, now, &ids) {
            controller.changed = true;
        }
        if self.controller.changed {
            let chain = self.controller.keeper.chain().clone();
            self.note(|| format!("controller: {chain:?}"));
        }
        if self.controller.changed || now.is_multiple_of(5) {
            self.controller.changed = false;
            for index in 0..NODES {
                if self.rng.gen_bool(0.8) {
                    let due = now + self.rng.gen_range(0..3);
                    let chain = self.controller.keeper.chain().clone();
                    self.configs.push((due, index, chain));
                }
            }
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let (due_configs, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.configs)
            .into_iter()
            .partition(|(due, index, _)| *due <= now && self.nodes[*index].running());
        self.configs = later;
        self.configs
            .retain(|(_, index, _)| self.nodes[*index].replica.is_some());
        for (_, index, chain) in due_configs {
            self.nodes[index]
                .replica
                .as_mut()
                .unwrap()
                .reconfigure(chain);
            self.drain(index);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|(due, envelope)| {
                *due <= now && self.nodes[index_of(envelope.to)].paused_until.is_none()
            });
        self.network = later;
        for (_, envelope) in due {
            let index = index_of(envelope.to);
            if let Some(replica) = self.nodes[index].replica.as_mut() {
                replica.receive(envelope);
                self.drain(index);
            }
        }
    }

    fn complete_syncs(&mut self) {
        for index in 0..NODES {
            if !self.nodes[index].running() {
                continue;
            }
            let now = self.now;
            let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.nodes[index].syncs)
                .into_iter()
                .partition(|(due, ..)| *due <= now);
            self.nodes[index].syncs = waiting;
            for (_, end, committed, epoch) in done {
                let node = &mut self.nodes[index];
                node.disk.sync(end, committed, epoch);
                node.replica.as_mut().unwrap().synced(end);
                self.drain(index);
            }
        }
    }

    fn client(&mut self) {
        if !self.rng.gen_bool(0.5) {
            return;
        }
        let target = if self.rng.gen_bool(0.9) {
            index_of(self.controller.keeper.chain().head())
        } else {
            self.rng.gen_range(0..NODES)
        };
        if !self.nodes[target].running() {
            return;
        }
        let item = Item {
            id: self.next_id,
            len: self.rng.gen_range(1..=3),
            epoch: ChainEpoch::default(),
        };
        self.next_id += 1;
        let taken = self.nodes[target].replica.as_mut().unwrap().append(item);
        if taken.is_ok() && !self.faulty() && self.first_heal_append.is_none() {
            self.first_heal_append = Some(self.next_id - 1);
        }
        self.drain(target);
    }

    /// Carries out a node's actions (and the reads they ask for) until it asks for nothing.
    fn drain(&mut self, index: usize) {
        loop {
            let Some(replica) = self.nodes[index].replica.as_mut() else {
                return;
            };
            let actions = replica.take_actions();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                self.act(index, action);
            }
        }
    }

    fn act(&mut self, index: usize, action: Action<Item>) {
        let now = self.now;
        let id = self.nodes[index].id;
        match &action {
            Action::Send(_) | Action::Read { .. } if !self.trace_sends => {}
            other => self.note(|| format!("{id}: {other:?}")),
        }
        match action {
            Action::Send(envelope) => {
                // One tick of latency; now and then a message is held back a few ticks
                // more, so later ones overtake it.
                let (loss, late) = if self.faulty() {
                    (0.05, 0.05)
                } else {
                    (0.0, 0.01)
                };
                if !self.rng.gen_bool(loss) {
                    let extra = if self.rng.gen_bool(late) {
                        self.rng.gen_range(1..5)
                    } else {
                        0
                    };
                    self.network.push((now + 1 + extra, envelope));
                }
            }
            Action::Append { start, entries } => self.nodes[index].disk.append(start, entries),
            Action::Sync {
                end,
                committed,
                attached_epoch,
            } => {
                let due = now + self.rng.gen_range(0..3);
                self.nodes[index]
                    .syncs
                    .push((due, end, committed, attached_epoch));
            }
            Action::Truncate { end } => self.nodes[index].disk.truncate(end),
            Action::Read { start } => {
                let entries = self.nodes[index].disk.read(start);
                let replica = self.nodes[index].replica.as_mut().unwrap();
                replica.read_done(start, entries);
            }
            Action::Committed(end) => self.on_committed(index, end),
        }
    }

    fn on_committed(&mut self, index: usize, end: Offset) {
        let node = &mut self.nodes[index];
        assert!(
            self.controller.keeper.chain().is_member(node.id),
            "{} reported {end} committed after the controller removed it (t={})",
            node.id,
            self.now
        );
        assert!(
            end > node.committed_reported,
            "{}: committed went back from {} to {end}",
            node.id,
            node.committed_reported
        );
        node.committed_reported = end;
        let from = node.checked_entries.min(node.disk.entries.len());
        for (start, item) in &node.disk.entries[from..] {
            if *start >= end {
                break;
            }
            node.checked_entries += 1;
            match self.committed.get(start) {
                Some(known) => assert_eq!(
                    known, item,
                    "{} holds a different entry at committed offset {start}",
                    node.id
                ),
                None => {
                    self.committed.insert(*start, item.clone());
                }
            }
        }
        assert!(
            node.disk.log_end() >= end,
            "{}: committed {end} past its log end {}",
            node.id,
            node.disk.log_end()
        );
    }

    fn check_end(&self) {
        let chain = self.controller.keeper.chain();
        for member in &chain.members {
            let node = &self.nodes[index_of(member.node)];
            for (start, item) in &self.committed {
                assert_eq!(
                    node.disk.at(*start),
                    Some(item),
                    "{} lost or changed committed offset {start} (final {:?})",
                    node.id,
                    chain
                );
            }
        }
        let head = &self.nodes[index_of(chain.head())];
        let first = self
            .first_heal_append
            .expect("the head takes appends once the faults stop");
        let committed_ids = self
            .committed
            .values()
            .filter(|item| item.id >= first)
            .count();
        assert!(
            committed_ids > 0,
            "nothing appended after the faults stopped was committed (head {}, chain {chain:?})",
            head.id
        );
    }
}
