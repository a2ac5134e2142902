//! Chain replication of one partition (van Renesse and Schneider, OSDI 2004), as a pure
//! state machine per member: see [`Replica`].

mod message;
mod replica;

pub use message::{Action, Cut, Envelope, Message};
pub use replica::{AppendRefused, Limits, Recovered, Replica};

use std::fmt;

use crate::ids::{ChainEpoch, NodeId};

/// What the chain replicates: a unit of the log spanning one or more offsets (in Strand,
/// a record batch). The core never looks inside, except for the chain epoch the head
/// stamps on it (in Strand, the batch's partition leader epoch).
pub trait Entry: Clone + fmt::Debug {
    /// Offsets the entry spans: at least 1.
    fn offsets(&self) -> u64;

    /// The chain epoch of the head that appended it.
    fn epoch(&self) -> ChainEpoch;

    /// Stamps the head's chain epoch, when the head appends it.
    fn set_epoch(&mut self, epoch: ChainEpoch);

    /// Its size, for bounding messages (`Limits::message_bytes_max`); 0 when size does
    /// not matter.
    fn bytes(&self) -> usize {
        0
    }
}

/// A node attached to a chain, and the epoch since which it has been attached without a
/// break (as a member or as the learner).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Member {
    pub node: NodeId,
    pub since: ChainEpoch,
}

/// A partition's chain as the controller decided it: members from head to tail, and at most
/// one learner after the tail, catching up before it joins as the new tail. The tail
/// forwards to the learner, but the learner's acknowledgements commit nothing.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Chain {
    pub epoch: ChainEpoch,
    pub members: Vec<Member>,
    pub learner: Option<Member>,
}

impl Chain {
    /// A chain of `members`, head first, and its `learner`.
    ///
    /// # Panics
    /// When `members` is empty, a node is attached twice, or one is attached since an
    /// epoch after `epoch`.
    pub fn new(epoch: ChainEpoch, members: Vec<Member>, learner: Option<Member>) -> Chain {
        assert!(!members.is_empty(), "a chain has at least one member");
        let attached: Vec<Member> = members.iter().copied().chain(learner).collect();
        for (index, member) in attached.iter().enumerate() {
            assert!(
                attached[..index]
                    .iter()
                    .all(|other| other.node != member.node),
                "{} is attached twice to the chain of {epoch}",
                member.node
            );
            assert!(
                member.since <= epoch,
                "{} attached since {} in a chain of {epoch}",
                member.node,
                member.since
            );
        }
        Chain {
            epoch,
            members,
            learner,
        }
    }

    pub fn head(&self) -> NodeId {
        self.members[0].node
    }

    pub fn tail(&self) -> NodeId {
        self.members[self.members.len() - 1].node
    }

    /// True when `node` is a member (not the learner).
    pub fn is_member(&self, node: NodeId) -> bool {
        self.members.iter().any(|member| member.node == node)
    }

    /// `node` as attached to this chain (a member or the learner).
    pub fn attached(&self, node: NodeId) -> Option<Member> {
        self.members
            .iter()
            .copied()
            .chain(self.learner)
            .find(|member| member.node == node)
    }

    /// The node after `node`: the next member towards the tail, or the learner after it.
    pub fn successor(&self, node: NodeId) -> Option<NodeId> {
        let order: Vec<NodeId> = self.order().collect();
        let at = order.iter().position(|member| *member == node)?;
        order.get(at + 1).copied()
    }

    /// The node before `node`, towards the head.
    pub fn predecessor(&self, node: NodeId) -> Option<NodeId> {
        let order: Vec<NodeId> = self.order().collect();
        let at = order.iter().position(|member| *member == node)?;
        at.checked_sub(1).map(|before| order[before])
    }

    fn order(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .chain(self.learner.as_ref())
            .map(|member| member.node)
    }
}
