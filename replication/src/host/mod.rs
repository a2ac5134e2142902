//! The I/O around the controller's pure cores: its log file, its thread and clock, and
//! this node's registration and heartbeats. Chain replication's host (engine binding and
//! shard-to-shard links) is not built yet.

mod controller_host;
mod log_file;
mod membership;

pub use controller_host::{
    ClusterView, ControllerHandle, ControllerHost, HostConfig, HostError, TopicProposalError,
    parse_endpoint,
};
pub use log_file::{LOG_FILE_BYTES_MAX, LOG_FILE_NAME, LogFile, LogFileError};
pub use membership::{Lease, Membership, Request};
