//! The controller quorum: raft-rs replicating [`Command`]s to every controller node, each
//! applying them in log order to its [`ClusterState`].
//!
//! raft-rs is sans-IO, like the chain core: [`Quorum`] takes ticks, proposals and peer
//! messages, and [`Quorum::take_output`] hands back what the host must do, in order:
//! make [`QuorumOutput::records`] durable (append them to the controller log file, or
//! replace the file with them when `rewrite` is set), then send the messages; the commands
//! it applied come with their outcomes, for whoever proposed them. Persisting before
//! sending is what makes a vote or an acknowledged entry survive a crash.
//!
//! Membership is fixed by the cluster's node list (`--peers`): with up to three nodes all
//! vote, above that the three lowest ids vote and the others follow as Raft learners, so
//! every node holds the metadata. Raft ids are node ids plus one, since raft-rs reserves 0
//! and Kafka clusters often number nodes from 0.

use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType, Message as RaftMessage, MessageType};
use raft::{RawNode, StateRole};

use super::cluster::{Applied, ClusterState, Command, DecodeError, Refused};
use super::quorum_log::{LogRecord, QuorumLog};
use super::raft_logging::raft_logger;
use crate::ids::NodeId;

/// The most voters the quorum has; nodes beyond them follow as learners.
pub const VOTERS_MAX: usize = 3;

/// How the quorum runs; the same on every node.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    pub node: NodeId,
    /// Every node of the cluster, this one included.
    pub nodes: Vec<NodeId>,
    /// Ticks without a leader before a follower stands for election (randomized up to
    /// twice that), and between a leader's heartbeats.
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Entries kept after the snapshot before the log is compacted into a new one.
    pub log_entries_max: usize,
    /// Bytes proposed and not yet committed before the leader refuses proposals.
    pub uncommitted_bytes_max: u64,
    /// Tells this run's proposals from an earlier run's when the log is applied again
    /// after a restart (any value that differs between runs, such as the start time).
    pub incarnation: u64,
}

/// A proposal this node made, to match with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProposalId {
    incarnation: u64,
    sequence: u64,
}

/// What the host must do after feeding the quorum, in this order.
#[derive(Debug, Default)]
pub struct QuorumOutput {
    /// Records to make durable before any message is sent.
    pub records: Vec<LogRecord>,
    /// The records are the whole log: they replace the file rather than extend it.
    pub rewrite: bool,
    /// Messages for peers: `(peer, message)`.
    pub messages: Vec<(NodeId, RaftMessage)>,
    /// Commands applied to the cluster state, in log order.
    pub applied: Vec<AppliedEntry>,
}

/// A command the log committed and this node applied.
#[derive(Debug)]
pub struct AppliedEntry {
    pub index: u64,
    /// Set when this node, in this run, proposed it.
    pub proposal: Option<ProposalId>,
    pub outcome: Result<Applied, Refused>,
}

/// Why a proposal was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    #[error("not the controller leader (the leader is {})", describe_leader(*.leader))]
    NotLeader { leader: Option<NodeId> },
    #[error(
        "the controller dropped the proposal ({0}); too much is in flight or the leader is stepping down"
    )]
    Dropped(String),
}

/// Why the quorum could not start or take a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    #[error("invalid controller configuration: {0}")]
    Config(String),
    #[error("the controller log's snapshot is unreadable: {0}")]
    Snapshot(DecodeError),
    #[error("refused a controller message from {from}: {reason}")]
    Message { from: String, reason: String },
}

/// One node's member of the controller quorum.
pub struct Quorum {
    raw: RawNode<QuorumLog>,
    state: ClusterState,
    node: NodeId,
    incarnation: u64,
    sequence: u64,
    log_entries_max: usize,
    /// The log was made here, not read from a file: its first records must be the whole
    /// image, membership included, or a restart would find entries with no members.
    fresh: bool,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("node", &self.node)
            .field("role", &self.raw.raft.state)
            .field("term", &self.raw.raft.term)
            .field("leader", &self.leader())
            .finish_non_exhaustive()
    }
}

impl Quorum {
    /// Starts the quorum member over the records its log file held (none on a first start).
    pub fn new(config: &QuorumConfig, records: Vec<LogRecord>) -> Result<Quorum, QuorumError> {
        let mut nodes = config.nodes.clone();
        nodes.sort_unstable();
        nodes.dedup();
        if !nodes.contains(&config.node) {
            return Err(QuorumError::Config(format!(
                "{} is not among the cluster's nodes {nodes:?}",
                config.node
            )));
        }
        let voters_len = nodes.len().min(VOTERS_MAX);
        let ids = |nodes: &[NodeId]| nodes.iter().map(|&n| raft_id(n)).collect::<Vec<u64>>();
        let replayed = QuorumLog::replay(records);
        let fresh = replayed.is_none();
        let log = replayed.unwrap_or_else(|| {
            QuorumLog::new(ids(&nodes[..voters_len]), ids(&nodes[voters_len..]))
        });
        let snapshot = log.snapshot_held();
        let state = if snapshot.get_data().is_empty() {
            ClusterState::default()
        } else {
            ClusterState::decode(snapshot.get_data()).map_err(QuorumError::Snapshot)?
        };
        let raft_config = raft::Config {
            id: raft_id(config.node),
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: snapshot.get_metadata().index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_uncommitted_size: config.uncommitted_bytes_max,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(|error| QuorumError::Config(error.to_string()))?;
        let raw = RawNode::new(&raft_config, log, &raft_logger(config.node))
            .map_err(|error| QuorumError::Config(error.to_string()))?;
        Ok(Quorum {
            raw,
            state,
            node: config.node,
            incarnation: config.incarnation,
            sequence: 0,
            log_entries_max: config.log_entries_max.max(1),
            fresh,
        })
    }

    /// The cluster metadata as this node has applied it.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        node_of(self.raw.raft.leader_id)
    }

    /// The log index up to which [`Quorum::state`] has applied the log.
    pub fn applied_index(&self) -> u64 {
        self.raw.raft.raft_log.applied
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// Advances the quorum's clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Proposes a command; only the leader takes proposals.
    pub fn propose(&mut self, command: &Command) -> Result<ProposalId, ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        self.sequence += 1;
        let id = ProposalId {
            incarnation: self.incarnation,
            sequence: self.sequence,
        };
        let mut context = Vec::with_capacity(16);
        context.extend_from_slice(&id.incarnation.to_le_bytes());
        context.extend_from_slice(&id.sequence.to_le_bytes());
        self.raw
            .propose(context, command.encode())
            .map_err(|error| ProposeError::Dropped(error.to_string()))?;
        Ok(id)
    }

    /// Takes a message from a peer. A snapshot is checked before raft-rs sees it.
    pub fn step(&mut self, message: RaftMessage) -> Result<(), QuorumError> {
        let from = node_of(message.from).map_or_else(|| "nobody".to_owned(), |n| n.to_string());
        let refuse = |reason: String| QuorumError::Message {
            from: from.clone(),
            reason,
        };
        if matches!(
            message.get_msg_type(),
            MessageType::MsgHup | MessageType::MsgBeat | MessageType::MsgPropose
        ) {
            return Err(refuse(format!(
                "{:?} is local to a node",
                message.get_msg_type()
            )));
        }
        if message.get_msg_type() == MessageType::MsgSnapshot {
            ClusterState::decode(message.get_snapshot().get_data())
                .map_err(|error| refuse(error.to_string()))?;
        }
        self.raw
            .step(message)
            .map_err(|error| refuse(error.to_string()))
    }

    /// Runs raft-rs's ready cycle: what to persist, what to send, what was applied.
    pub fn take_output(&mut self) -> QuorumOutput {
        let mut out = QuorumOutput {
            rewrite: std::mem::take(&mut self.fresh),
            ..QuorumOutput::default()
        };
        if !self.raw.has_ready() {
            if out.rewrite {
                out.records = self.raw.store().image();
            }
            return out;
        }
        let mut ready = self.raw.ready();
        self.collect_messages(ready.take_messages(), &mut out);
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.state = ClusterState::decode(snapshot.get_data())
                .expect("snapshots are checked when they arrive");
            self.raw.mut_store().install_snapshot(snapshot);
            out.rewrite = true;
        }
        self.apply(ready.take_committed_entries(), &mut out);
        if !ready.entries().is_empty() {
            self.raw.mut_store().append(ready.entries());
            out.records
                .push(LogRecord::Entries(ready.entries().clone()));
        }
        if let Some(state) = ready.hs() {
            self.raw.mut_store().set_hard_state(state.clone());
            out.records.push(LogRecord::HardState(state.clone()));
        }
        self.collect_messages(ready.take_persisted_messages(), &mut out);
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
            let state = self.raw.store().hard_state().clone();
            out.records.push(LogRecord::HardState(state));
        }
        self.collect_messages(light.take_messages(), &mut out);
        self.apply(light.take_committed_entries(), &mut out);
        self.raw.advance_apply();
        self.snapshots_sent(&out);
        self.compact_if_long(&mut out);
        if out.rewrite {
            out.records = self.raw.store().image();
        }
        out
    }

    fn collect_messages(&self, messages: Vec<RaftMessage>, out: &mut QuorumOutput) {
        for message in messages {
            if let Some(peer) = node_of(message.to) {
                out.messages.push((peer, message));
            }
        }
    }

    /// Counts every snapshot handed out as delivered. raft-rs pauses a follower's
    /// replication while its snapshot is in flight until told how it went; told at once,
    /// it probes the follower next, which either confirms the snapshot or, if it was lost,
    /// asks for it again. Waiting for the transport instead would leave a follower whose
    /// snapshot was lost without a word behind for good.
    fn snapshots_sent(&mut self, out: &QuorumOutput) {
        for (peer, message) in &out.messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.raw
                    .report_snapshot(raft_id(*peer), raft::SnapshotStatus::Finish);
            }
        }
    }

    /// The transport lost its connection to `peer`: replication to it probes again
    /// rather than streaming into the void.
    pub fn unreachable(&mut self, peer: NodeId) {
        self.raw.report_unreachable(raft_id(peer));
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut QuorumOutput) {
        for entry in entries {
            // Empty entries are the ones a new leader appends to commit its term; nothing
            // proposes configuration changes (membership comes from the node list).
            if entry.data.is_empty() || entry.get_entry_type() != EntryType::EntryNormal {
                continue;
            }
            let outcome = match Command::decode(&entry.data) {
                Ok(command) => self.state.apply(command),
                Err(error) => Err(Refused::Undecodable {
                    index: entry.index,
                    reason: error.reason,
                }),
            };
            out.applied.push(AppliedEntry {
                index: entry.index,
                proposal: self.own_proposal(&entry.context),
                outcome,
            });
        }
    }

    fn own_proposal(&self, context: &[u8]) -> Option<ProposalId> {
        let incarnation = u64::from_le_bytes(context.get(..8)?.try_into().ok()?);
        let sequence = u64::from_le_bytes(context.get(8..16)?.try_into().ok()?);
        (incarnation == self.incarnation).then_some(ProposalId {
            incarnation,
            sequence,
        })
    }

    /// Folds the applied part of a long log into a snapshot of the cluster state.
    fn compact_if_long(&mut self, out: &mut QuorumOutput) {
        let applied = self.raw.raft.raft_log.applied;
        let log = self.raw.store();
        let snapshot_index = log.snapshot_held().get_metadata().index;
        if log.entry_count() <= self.log_entries_max || applied <= snapshot_index {
            return;
        }
        let data = self.state.encode();
        self.raw.mut_store().compact(applied, data);
        out.rewrite = true;
    }
}

/// Encodes a quorum message for the transport.
pub fn encode_message(message: &RaftMessage) -> Vec<u8> {
    message
        .write_to_bytes()
        .expect("raft-rs messages always encode")
}

/// Decodes a quorum message from the transport.
pub fn decode_message(bytes: &[u8]) -> Result<RaftMessage, DecodeError> {
    RaftMessage::parse_from_bytes(bytes).map_err(|error| DecodeError {
        what: "controller message",
        reason: error.to_string(),
    })
}

fn raft_id(node: NodeId) -> u64 {
    u64::from(node.value()) + 1
}

fn node_of(raft_id: u64) -> Option<NodeId> {
    raft_id
        .checked_sub(1)
        .and_then(|id| u32::try_from(id).ok())
        .map(NodeId::new)
}

fn describe_leader(leader: Option<NodeId>) -> String {
    leader.map_or_else(|| "unknown".to_owned(), |node| node.to_string())
}
