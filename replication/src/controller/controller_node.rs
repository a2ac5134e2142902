//! One node's part of the controller: its quorum member and, while it leads, the leader's
//! duties: taking heartbeats, granting leases, and turning liveness and replica reports
//! into chain decisions that go through the log.
//!
//! Liveness and reports live only at the leader (they change every heartbeat; the log
//! carries only the decisions). A node that becomes leader therefore knows nothing of the
//! leases its predecessor granted; it counts every node as heard at the moment it took over
//! plus a grace. A deposed leader goes on granting leases for at most 2 election timeouts
//! (ET) after it last heard a quorum (check-quorum then makes it step down), and the new
//! leader is elected at least 1 ET after that moment, so the last lease it may not know
//! of ends within ET + lease of the election. Silence removes a node no earlier than
//! grace + silence after the election, so the grace is ET + lease - silence (and a tick).
//!
//! A lease is granted in the answer to a heartbeat, together with the log index the leader
//! had applied. The node counts the lease from when it sent the heartbeat, and uses it
//! only once its own copy of the cluster state has applied that index, so it never acts
//! on a lease over a chain older than the one the leader granted it with.

use std::collections::BTreeMap;

use super::chain_keeper::{ChainKeeper, ReplicaReport};
use super::cluster::{ClusterState, Command, Endpoint};
use super::liveness::{Liveness, Timing};
use super::quorum::{ProposalId, ProposeError, Quorum, QuorumConfig, QuorumError, QuorumOutput};
use super::quorum_log::LogRecord;
use crate::ids::{ChainEpoch, NodeId};

/// How the controller runs; the same on every node.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub quorum: QuorumConfig,
    pub timing: Timing,
    /// Milliseconds per quorum tick (the host ticks at this pace).
    pub tick_ms: u64,
    /// Chain decisions proposed per tick at most; the rest wait for the next tick.
    pub decisions_per_tick_max: usize,
}

/// A partition, by topic name and index.
pub type PartitionKey = (String, u32);

/// What a node tells the controller leader every heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub node: NodeId,
    /// Its replica of each partition it is attached to.
    pub reports: Vec<(PartitionKey, ReplicaReport)>,
}

/// The leader's answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatAnswer {
    /// A lease of `lease_ms` from when the heartbeat was sent, valid once the node has
    /// applied the log up to `applied_index`.
    Lease {
        lease_ms: u64,
        applied_index: u64,
    },
    /// The node must register before it gets a lease (it restarted, or is new).
    Unregistered,
    NotLeader {
        leader: Option<NodeId>,
    },
}

/// The leader's state, rebuilt each time this node becomes leader.
#[derive(Debug)]
struct LeaderDuty {
    liveness: Liveness,
    keepers: BTreeMap<PartitionKey, ChainKeeper>,
    /// Chain decisions proposed and not yet applied: the epoch they install, and when to
    /// give up waiting (a proposal a leader change dropped).
    pending: BTreeMap<PartitionKey, (ChainEpoch, u64)>,
    /// Fences proposed and not yet applied: the registration they fence, and when to give
    /// up waiting.
    fencing: BTreeMap<NodeId, (u64, u64)>,
}

/// One node's part of the controller.
#[derive(Debug)]
pub struct ControllerNode {
    quorum: Quorum,
    config: ControllerConfig,
    duty: Option<LeaderDuty>,
    now_ms: u64,
    last_tick_ms: Option<u64>,
}

impl ControllerNode {
    /// Starts over the records the node's controller log held.
    pub fn new(
        config: ControllerConfig,
        records: Vec<LogRecord>,
    ) -> Result<ControllerNode, QuorumError> {
        Ok(ControllerNode {
            quorum: Quorum::new(&config.quorum, records)?,
            config,
            duty: None,
            now_ms: 0,
            last_tick_ms: None,
        })
    }

    pub fn state(&self) -> &ClusterState {
        self.quorum.state()
    }

    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    pub fn quorum_mut(&mut self) -> &mut Quorum {
        &mut self.quorum
    }

    /// The host's clock moved to `now_ms`, one tick after the last call.
    ///
    /// A gap longer than a lease since the last tick means this node stalled (a pause, a
    /// slow disk): it heard nobody meanwhile, through no fault of theirs, so as leader it
    /// gives every node a fresh silence window rather than fence them all (itself too).
    pub fn tick(&mut self, now_ms: u64) {
        let gap = self
            .last_tick_ms
            .map_or(0, |last| now_ms.saturating_sub(last));
        let stalled = gap > self.config.timing.lease_ms;
        self.last_tick_ms = Some(now_ms);
        self.now_ms = self.now_ms.max(now_ms);
        if stalled && let Some(duty) = self.duty.as_mut() {
            let nodes: Vec<NodeId> = self.quorum.state().nodes().keys().copied().collect();
            tracing::warn!(
                stalled_ms = gap,
                "controller stalled for longer than a lease; liveness starts over"
            );
            duty.liveness = Liveness::new(self.config.timing, &nodes, now_ms);
        }
        self.quorum.tick();
        self.take_up_duty();
        self.decide();
    }

    /// Connecting to `node` is refused (its process is gone): as leader, it counts as
    /// silent at once unless heard from within half a lease (see [`Liveness::gone`]).
    pub fn refused(&mut self, node: NodeId) {
        let recent_ms = self.config.timing.lease_ms / 2;
        if let Some(duty) = self.duty.as_mut()
            && duty.liveness.gone(node, self.now_ms, recent_ms)
        {
            tracing::info!(%node, "connections to the node are refused: it counts as gone");
        }
    }

    /// A heartbeat from a node.
    pub fn heartbeat(&mut self, heartbeat: &Heartbeat, now_ms: u64) -> HeartbeatAnswer {
        self.now_ms = self.now_ms.max(now_ms);
        self.take_up_duty();
        let Some(duty) = self.duty.as_mut() else {
            return HeartbeatAnswer::NotLeader {
                leader: self.quorum.leader(),
            };
        };
        let now = self.now_ms;
        let fenced =
            self.quorum
                .state()
                .nodes()
                .get(&heartbeat.node)
                .is_none_or(|record| {
                    record.fenced
                        || duty.fencing.get(&heartbeat.node).is_some_and(
                            |&(registrations, until)| {
                                registrations == record.registrations && until > now
                            },
                        )
                });
        if fenced {
            // A fenced node (or one whose fence is on its way through the log) registers
            // again, opening new epochs in its chains; until then it is not heard.
            return HeartbeatAnswer::Unregistered;
        }
        duty.liveness.heard(heartbeat.node, self.now_ms);
        for (key, report) in &heartbeat.reports {
            if let Some(keeper) = duty.keepers.get_mut(key) {
                keeper.report(heartbeat.node, *report);
            }
        }
        HeartbeatAnswer::Lease {
            lease_ms: self.config.timing.lease_ms,
            applied_index: self.quorum.applied_index(),
        }
    }

    /// Proposes a node's registration (the node asked the leader on its start).
    pub fn register(
        &mut self,
        node: NodeId,
        kafka: Endpoint,
        internal: Endpoint,
        incarnation: u64,
    ) -> Result<ProposalId, ProposeError> {
        if let Some(duty) = self.duty.as_mut() {
            // Registering is hearing from it: a fence decided on its old silence is refused
            // once the registration applies, and no new one is made meanwhile.
            duty.liveness.heard(node, self.now_ms);
        }
        self.quorum.propose(&Command::RegisterNode {
            node,
            kafka,
            internal,
            incarnation,
        })
    }

    /// Runs the quorum's ready cycle (see [`Quorum::take_output`]) and brings the leader's
    /// keepers up to what the log applied.
    pub fn take_output(&mut self) -> QuorumOutput {
        let out = self.quorum.take_output();
        if !out.applied.is_empty() || out.rewrite {
            self.adopt_applied();
        }
        out
    }

    /// Starts or drops the leader's duties as leadership comes and goes.
    fn take_up_duty(&mut self) {
        if !self.quorum.is_leader() {
            self.duty = None;
            return;
        }
        if self.duty.is_some() {
            return;
        }
        let quorum = &self.config.quorum;
        let election_ticks = u64::try_from(quorum.election_ticks).unwrap_or(u64::MAX / 4);
        let election_ms = election_ticks.saturating_mul(self.config.tick_ms);
        let timing = self.config.timing;
        // One tick of margin for the tick the check-quorum step-down may land on.
        let grace_ms =
            (election_ms + timing.lease_ms + self.config.tick_ms).saturating_sub(timing.silence_ms);
        let nodes: Vec<NodeId> = self.quorum.state().nodes().keys().copied().collect();
        self.duty = Some(LeaderDuty {
            liveness: Liveness::new(self.config.timing, &nodes, self.now_ms + grace_ms),
            keepers: BTreeMap::new(),
            pending: BTreeMap::new(),
            fencing: BTreeMap::new(),
        });
        self.adopt_applied();
    }

    /// Makes the keepers match the applied chain records (new partitions get a keeper,
    /// deleted ones lose theirs, a changed chain is adopted).
    fn adopt_applied(&mut self) {
        let Some(duty) = self.duty.as_mut() else {
            return;
        };
        let state = self.quorum.state();
        let mut live = BTreeMap::new();
        for (name, topic) in state.topics() {
            for (index, record) in topic.partitions.iter().enumerate() {
                let key = (
                    name.clone(),
                    u32::try_from(index).expect("bounded partitions"),
                );
                let mut keeper = duty.keepers.remove(&key).unwrap_or_else(|| {
                    ChainKeeper::from_record(record.clone())
                        .with_factor(usize::from(topic.replication_factor))
                });
                if keeper.chain().epoch != record.chain.epoch {
                    keeper.adopt(record.clone());
                }
                if duty
                    .pending
                    .get(&key)
                    .is_some_and(|(epoch, _)| *epoch <= record.chain.epoch)
                {
                    duty.pending.remove(&key);
                }
                live.insert(key, keeper);
            }
        }
        duty.keepers = live;
        for node in state.nodes().keys() {
            // A node registered since this leader took over counts as heard from now.
            if !duty.liveness.knows(*node) {
                duty.liveness.heard(*node, self.now_ms);
            }
        }
    }

    /// Proposes the fences and chain changes that liveness and reports call for.
    fn decide(&mut self) {
        let mut proposed = self.fence_silent();
        let Some(duty) = self.duty.as_mut() else {
            return;
        };
        let now = self.now_ms;
        // A fenced node joins no chain until it registers again.
        let nodes: Vec<NodeId> = self
            .quorum
            .state()
            .nodes()
            .iter()
            .filter(|(_, record)| !record.fenced)
            .map(|(node, _)| *node)
            .collect();
        let wait_ms = self.config.timing.silence_ms;
        for (key, keeper) in &duty.keepers {
            if proposed >= self.config.decisions_per_tick_max {
                break;
            }
            if duty.pending.get(key).is_some_and(|(_, until)| *until > now) {
                continue;
            }
            let Some(record) = keeper.next_record(&duty.liveness, now, &nodes) else {
                continue;
            };
            let epoch = record.chain.epoch;
            let command = Command::SetChain {
                topic: key.0.clone(),
                partition: key.1,
                record,
            };
            if self.quorum.propose(&command).is_err() {
                // Not leader any more, or the log is full: the next tick tries again.
                break;
            }
            duty.pending.insert(key.clone(), (epoch, now + wait_ms));
            proposed += 1;
        }
    }

    /// Proposes a fence for every registered node silent past the silence window (Kafka
    /// fences a broker whose session lapsed); returns how many it proposed.
    fn fence_silent(&mut self) -> usize {
        let Some(duty) = self.duty.as_mut() else {
            return 0;
        };
        let now = self.now_ms;
        let wait_ms = self.config.timing.silence_ms;
        let silent: Vec<(NodeId, u64)> = self
            .quorum
            .state()
            .nodes()
            .iter()
            .filter(|(node, record)| {
                !record.fenced
                    && duty.liveness.silent(**node, now)
                    && !duty
                        .fencing
                        .get(node)
                        .is_some_and(|&(registrations, until)| {
                            registrations == record.registrations && until > now
                        })
            })
            .map(|(node, record)| (*node, record.registrations))
            .take(self.config.decisions_per_tick_max)
            .collect();
        let mut proposed = 0;
        for (node, registrations) in silent {
            let command = Command::FenceNode {
                node,
                registrations,
            };
            if self.quorum.propose(&command).is_err() {
                break;
            }
            duty.fencing.insert(node, (registrations, now + wait_ms));
            proposed += 1;
        }
        proposed
    }
}
