//! Topic change requests (create, add partitions, delete) at the controller thread: the Kafka front end's own (from any
//! shard) and other nodes' (forwarded to the leader, as Kafka brokers forward
//! CreateTopics to the controller since KIP-590). The leader proposes them and answers
//! each once its command applied; a follower forwards them to the leader it knows and
//! relays the answer. Every table is bounded, and an answer that does not come within
//! [`ANSWER_WAIT_MS`] is given up as `Lost`.

use std::collections::HashMap;

use crate::controller::{ProposalId, TopicChange, TopicRefusal};
use crate::ids::NodeId;

/// Requests waiting at each stage, at most.
pub const TOPIC_REQUESTS_MAX: usize = 64;

/// How long a request may wait for its command to apply or for the leader's answer.
pub const ANSWER_WAIT_MS: u64 = 10_000;

/// Where an answer goes.
pub type TopicReply = futures::channel::oneshot::Sender<Result<(), TopicRefusal>>;

/// A topic change for the controller to make.
#[derive(Debug)]
pub struct TopicRequest {
    pub change: TopicChange,
    pub reply: TopicReply,
}

/// Who asked for a topic the leader proposed.
#[derive(Debug)]
pub enum Asker {
    /// This node's front end.
    Local(TopicReply),
    /// Another node, for its request `id`.
    Peer { node: NodeId, id: u64 },
}

/// The requests in flight.
#[derive(Debug, Default)]
pub struct TopicDesk {
    /// Proposed here as leader: who asked, and when to give up.
    proposed: HashMap<ProposalId, (Asker, u64)>,
    /// Forwarded to the leader: the local asker, and when to give up.
    forwarded: HashMap<u64, (TopicReply, u64)>,
    next_id: u64,
}

impl TopicDesk {
    /// Room for one more proposal.
    pub fn can_propose(&self) -> bool {
        self.proposed.len() < TOPIC_REQUESTS_MAX
    }

    pub fn proposed(&mut self, proposal: ProposalId, asker: Asker, now_ms: u64) {
        self.proposed
            .insert(proposal, (asker, now_ms + ANSWER_WAIT_MS));
    }

    /// Keeps `reply` for a request forwarded to the leader; the request's id, or the
    /// reply back when too many wait.
    pub fn forward(&mut self, reply: TopicReply, now_ms: u64) -> Result<u64, TopicReply> {
        if self.forwarded.len() >= TOPIC_REQUESTS_MAX {
            return Err(reply);
        }
        self.next_id += 1;
        self.forwarded
            .insert(self.next_id, (reply, now_ms + ANSWER_WAIT_MS));
        Ok(self.next_id)
    }

    /// The command of `proposal` applied: who to answer.
    pub fn applied(&mut self, proposal: ProposalId) -> Option<Asker> {
        self.proposed.remove(&proposal).map(|(asker, _)| asker)
    }

    /// The leader answered forwarded request `id`.
    pub fn answered(&mut self, id: u64, outcome: Result<(), TopicRefusal>) {
        if let Some((reply, _)) = self.forwarded.remove(&id) {
            let _ = reply.send(outcome);
        }
    }

    /// Gives up on what waited too long (and, when `deposed`, on every proposal: a
    /// deposed leader's proposals may never apply); returns the askers to tell.
    pub fn expire(&mut self, now_ms: u64, deposed: bool) -> Vec<Asker> {
        let late: Vec<ProposalId> = self
            .proposed
            .iter()
            .filter(|(_, (_, until))| deposed || *until <= now_ms)
            .map(|(proposal, _)| *proposal)
            .collect();
        let askers = late
            .into_iter()
            .filter_map(|proposal| self.proposed.remove(&proposal))
            .map(|(asker, _)| asker)
            .collect();
        self.forwarded.retain(|_, (_, until)| *until > now_ms);
        askers
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn forwarded_requests_are_answered_once_and_given_up_when_late() {
        let mut desk = TopicDesk::default();
        let (reply, mut answer) = futures::channel::oneshot::channel();
        let id = desk.forward(reply, 0).unwrap();
        desk.answered(id, Err(TopicRefusal::TopicExists("t".into())));
        assert_eq!(
            answer.try_recv().unwrap(),
            Some(Err(TopicRefusal::TopicExists("t".into())))
        );
        // A late request is dropped: its asker sees the channel close (`Lost`).
        let (reply, mut answer) = futures::channel::oneshot::channel();
        desk.forward(reply, 0).unwrap();
        assert!(desk.expire(ANSWER_WAIT_MS - 1, false).is_empty());
        assert_eq!(answer.try_recv().unwrap(), None);
        desk.expire(ANSWER_WAIT_MS, false);
        assert!(answer.try_recv().is_err());
        // The table is bounded.
        for _ in 0..TOPIC_REQUESTS_MAX {
            desk.forward(futures::channel::oneshot::channel().0, 0)
                .unwrap();
        }
        assert!(
            desk.forward(futures::channel::oneshot::channel().0, 0)
                .is_err()
        );
    }
}
