//! The binding of chains to the storage engine and the node's links: a driver task on
//! every shard runs the replicas of the partitions the shard owns ([`run_shard`]); the
//! [`ChainHub`] connects the drivers with the Kafka front end (produce requests), the
//! controller thread (chain messages from peers, replica reports for heartbeats) and the
//! links (chain messages to peers). Unlike `chain` and `controller`, this is I/O: it runs
//! on the shards' glommio executors.

mod driver;
mod entry;
mod hub;
mod state_file;
mod wire;

pub use driver::{TICK, run_shard};
pub use entry::{epoch_of, leader_epoch};
pub use hub::{ChainHub, ProduceError, SHARD_INBOX_MAX, ShardInbound};
pub use state_file::{PartitionRef, StateFile, StoredReplica};
pub use wire::{BATCH_BYTES_MAX, WireError, push_message, read_message};
