//! The controller's state: which nodes are alive and every partition's chain, and the
//! decisions that change them. Pure, like the chain core: the Raft log that will replicate
//! it between controller nodes, and the heartbeat transport, wrap it.

mod chain_keeper;
mod liveness;

pub use chain_keeper::{ChainKeeper, ReplicaReport};
pub use liveness::{Liveness, Timing};
