//! Strand's cluster layer: chain replication of partitions across nodes.
//!
//! Owns the replication protocol of one partition's chain (`chain`): the head appends and
//! forwards, each member appends and forwards, acknowledgements travel back up, each member
//! passing one on only after its own copy is durable, and the committed offset advances
//! when an acknowledgement reaches the head. Reconfiguration is by chain epoch: every
//! message carries it and a stale one is refused.
//!
//! It must never do I/O, read a clock or spawn a task: [`chain::Replica`] takes events and
//! returns [`chain::Action`]s (messages to send, log appends, syncs, truncations, reads),
//! so the deterministic simulation in `tests/simulation.rs` can drive it through crashes,
//! pauses, message loss, reordering and delay. [`controller`] holds the cluster metadata
//! decisions (liveness by lease, chains per partition, learners and promotion) as a pure
//! state machine too, and the simulation runs it as the controller; the cluster metadata
//! ([`controller::ClusterState`]) is replicated by [`controller::Quorum`], a sans-IO Raft
//! member on raft-rs, driven by `tests/quorum_simulation.rs`. [`host`] runs the quorum
//! on a thread with its log file and [`transport`] links; [`binding`] runs the chains of
//! each shard's partitions against the storage engine (this part does I/O, on the shards).
//!
//! Public boundary: [`NodeId`], [`ChainEpoch`], [`chain::Chain`], [`chain::Member`],
//! [`chain::Replica`], [`chain::Recovered`], [`chain::Limits`], [`chain::Message`],
//! [`chain::Envelope`], [`chain::Action`], [`chain::Entry`], [`controller::ChainKeeper`],
//! [`controller::ReplicaReport`], [`controller::Liveness`], [`controller::Timing`],
//! [`controller::ChainRecord`], [`controller::ClusterState`], [`controller::Command`],
//! [`controller::Quorum`], [`controller::QuorumConfig`], [`controller::QuorumOutput`],
//! [`controller::LogRecord`], [`controller::place`].

pub mod binding;
pub mod chain;
pub mod controller;
pub mod host;
mod ids;
pub mod transport;

pub use ids::{ChainEpoch, NodeId};
