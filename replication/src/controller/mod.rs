//! The controller: the cluster metadata (nodes, topics, every partition's chain), the
//! decisions that change it, and the Raft quorum that replicates it.
//!
//! All of it is pure, like the chain core: [`ClusterState`] applies [`Command`]s in log
//! order; [`Quorum`] wraps raft-rs, which is sans-IO, and hands out records to persist and
//! messages to send; [`Liveness`] and [`ChainKeeper`] are the leader's decisions from
//! heartbeats and replica reports. The host owns the clock, the file and the sockets.

mod chain_keeper;
mod cluster;
mod controller_node;
mod liveness;
mod placement;
mod quorum;
mod quorum_log;
mod raft_logging;
mod topic_request;

pub use chain_keeper::{ChainKeeper, ChainRecord, ReplicaReport};
pub use cluster::{
    Applied, ClusterState, Command, DecodeError, Endpoint, NodeRecord, Refused,
    TOPIC_PARTITIONS_MAX, TopicRecord,
};
pub use controller_node::{
    ControllerConfig, ControllerNode, Heartbeat, HeartbeatAnswer, PartitionKey,
};
pub use liveness::{Liveness, Timing};
pub use placement::{PlacementError, place};
pub use quorum::{
    AppliedEntry, ProposalId, ProposeError, Quorum, QuorumConfig, QuorumError, QuorumOutput,
    VOTERS_MAX, decode_message, encode_message,
};
pub use quorum_log::{LogRecord, QuorumLog, RECORD_BYTES_MAX, Replayed};
pub use topic_request::{TopicChange, TopicRefusal, create_topic_command, topic_command};
