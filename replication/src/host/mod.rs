//! The I/O around the controller's pure cores: its log file, its thread and clock, and
//! this node's registration and heartbeats, topic creation for the Kafka front end, and
//! the hand-off of peers' chain messages to the shards' drivers (`crate::binding`).

mod controller_host;
mod log_file;
mod membership;
mod topic_desk;

pub use controller_host::{
    ClusterView, ControllerHandle, ControllerHost, HostConfig, HostError, parse_endpoint,
};
pub use log_file::{LOG_FILE_BYTES_MAX, LOG_FILE_NAME, LogFile, LogFileError};
pub use membership::{Lease, Membership, Request};
