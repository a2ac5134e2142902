//! Identifiers of the cluster: nodes and chain epochs.

use std::fmt;

/// A node of the cluster (`strand serve --node-id`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(PartialEq, Eq, PartialOrd, Ord))]
pub struct NodeId(u32);

impl NodeId {
    pub const fn new(id: u32) -> NodeId {
        NodeId(id)
    }

    pub const fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// The version of a partition's chain: every reconfiguration moves it up by one, and every
/// replication message carries it, so a member still on an older chain is refused.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct ChainEpoch(u64);

impl ChainEpoch {
    pub const fn new(epoch: u64) -> ChainEpoch {
        ChainEpoch(epoch)
    }

    pub const fn value(self) -> u64 {
        self.0
    }

    /// The epoch of the next reconfiguration.
    #[must_use]
    pub fn next(self) -> ChainEpoch {
        ChainEpoch(
            self.0
                .checked_add(1)
                .expect("chain epochs never reach u64::MAX"),
        )
    }
}

impl fmt::Display for ChainEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}
