//! The controller's decisions about one partition's chain, from what nodes report.
//!
//! Rules (each one a failure the chain simulation found without it):
//! - a node silent for longer than the silence window leaves the chain, but never the last
//!   member known to hold every committed offset;
//! - a restarted node registers, which always opens a new epoch (a head's entries before
//!   and after a restart must not share one), and is detached unless no other member is
//!   known to hold every committed offset;
//! - a live node outside the chain attaches as the learner;
//! - the learner is promoted to tail once it reports its log durable up to the committed
//!   offset, on fresh news from the head;
//! - a promoted member is known to hold every committed offset once a head has committed
//!   in an epoch that includes it: that commit needed its acknowledgement.

use std::collections::BTreeMap;

use strand_engine::Offset;

use super::liveness::Liveness;
use crate::chain::{Chain, Member};
use crate::ids::{ChainEpoch, NodeId};

/// What a node's heartbeat says of its replica of the partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaReport {
    /// The chain epoch the replica is in.
    pub epoch: ChainEpoch,
    pub durable_end: Offset,
    /// The committed offset it knows, and the epoch in which it last committed as head.
    pub committed: Offset,
    pub committed_in: ChainEpoch,
}

/// One partition's chain and the controller's knowledge about it.
#[derive(Clone, Debug)]
pub struct ChainKeeper {
    chain: Chain,
    /// The epoch each member was promoted from learner in (first members: none).
    promoted_in: BTreeMap<NodeId, ChainEpoch>,
    /// The highest committed offset any replica reported.
    committed: Offset,
    /// The highest epoch in which a head reported committing.
    commit_epoch: ChainEpoch,
    reports: BTreeMap<NodeId, ReplicaReport>,
}

impl ChainKeeper {
    /// A new partition's chain of `members`, head first, in epoch 1.
    pub fn new(members: &[NodeId]) -> ChainKeeper {
        let epoch = ChainEpoch::new(1);
        let members = members
            .iter()
            .map(|&node| Member { node, since: epoch })
            .collect();
        ChainKeeper {
            chain: Chain::new(epoch, members, None),
            promoted_in: BTreeMap::new(),
            committed: Offset::ZERO,
            commit_epoch: ChainEpoch::default(),
            reports: BTreeMap::new(),
        }
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Takes a node's report on its replica.
    pub fn report(&mut self, node: NodeId, report: ReplicaReport) {
        self.committed = self.committed.max(report.committed);
        self.commit_epoch = self.commit_epoch.max(report.committed_in);
        self.reports.insert(node, report);
    }

    /// A restarted node registers: returns the epoch from which it may act.
    pub fn register(&mut self, node: NodeId) -> ChainEpoch {
        self.reports.remove(&node);
        let mut members = self.chain.members.clone();
        let mut learner = self.chain.learner;
        if learner.is_some_and(|l| l.node == node) {
            learner = None;
        }
        if self.may_remove(&members, node) {
            members.retain(|m| m.node != node);
        }
        self.install(members, learner);
        self.chain.epoch
    }

    /// Applies the rules once; returns true when the chain changed.
    pub fn decide(&mut self, liveness: &Liveness, now_ms: u64, nodes: &[NodeId]) -> bool {
        let mut members = self.chain.members.clone();
        let mut learner = self
            .chain
            .learner
            .filter(|l| !liveness.silent(l.node, now_ms));
        if let Some(gone) = members.iter().position(|m| liveness.silent(m.node, now_ms))
            && self.may_remove(&members, members[gone].node)
        {
            members.remove(gone);
        }
        let next = self.chain.epoch.next();
        if learner.is_none()
            && let Some(&node) = nodes.iter().find(|&&node| {
                !members.iter().any(|m| m.node == node) && !liveness.silent(node, now_ms)
            })
        {
            learner = Some(Member { node, since: next });
        }
        if let Some(l) = learner
            && self.caught_up(l, liveness, now_ms, &members)
        {
            self.promoted_in.insert(l.node, next);
            members.push(l);
            learner = None;
        }
        let changed = members != self.chain.members || learner != self.chain.learner;
        if changed {
            self.install(members, learner);
        }
        changed
    }

    /// True when `learner` reports its log durable up to the committed offset, in the
    /// current epoch, and the head was heard from within the lease.
    fn caught_up(
        &self,
        learner: Member,
        liveness: &Liveness,
        now_ms: u64,
        members: &[Member],
    ) -> bool {
        let head_fresh = liveness.fresh(members[0].node, now_ms);
        let report = self.reports.get(&learner.node);
        let ready = report.is_some_and(|report| {
            report.epoch == self.chain.epoch && report.durable_end >= self.committed
        });
        head_fresh
            && ready
            && learner.since <= self.chain.epoch
            && !liveness.silent(learner.node, now_ms)
    }

    /// True when a member other than `node` is known to hold every committed offset.
    fn may_remove(&self, members: &[Member], node: NodeId) -> bool {
        members.iter().any(|m| {
            m.node != node
                && self
                    .promoted_in
                    .get(&m.node)
                    .is_none_or(|&epoch| self.commit_epoch >= epoch)
        })
    }

    fn install(&mut self, members: Vec<Member>, learner: Option<Member>) {
        self.chain = Chain::new(self.chain.epoch.next(), members, learner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::Timing;

    fn node(id: u32) -> NodeId {
        NodeId::new(id)
    }

    fn nodes() -> Vec<NodeId> {
        (1..=3).map(node).collect()
    }

    fn members(keeper: &ChainKeeper) -> Vec<u32> {
        keeper
            .chain()
            .members
            .iter()
            .map(|m| m.node.value())
            .collect()
    }

    fn report(epoch: ChainEpoch, durable: i64, committed: i64, committed_in: u64) -> ReplicaReport {
        ReplicaReport {
            epoch,
            durable_end: Offset::new(durable).expect("non-negative"),
            committed: Offset::new(committed).expect("non-negative"),
            committed_in: ChainEpoch::new(committed_in),
        }
    }

    /// Heartbeats from every node but `except`, at `now`.
    fn beat(liveness: &mut Liveness, now: u64, except: &[u32]) {
        for node in nodes() {
            if !except.contains(&node.value()) {
                liveness.heard(node, now);
            }
        }
    }

    #[test]
    fn a_silent_member_leaves_but_the_last_one_stays() {
        let mut keeper = ChainKeeper::new(&nodes());
        let mut liveness = Liveness::new(Timing::new(10, 20), &nodes(), 0);
        beat(&mut liveness, 15, &[2]);
        assert!(
            !keeper.decide(&liveness, 20, &nodes()),
            "not silent for 20 ms yet"
        );
        assert!(keeper.decide(&liveness, 21, &nodes()));
        assert_eq!(members(&keeper), vec![1, 3]);
        assert_eq!(keeper.chain().epoch, ChainEpoch::new(2));
        beat(&mut liveness, 100, &[1, 2, 3]);
        for now in 101..200 {
            keeper.decide(&liveness, now, &nodes());
        }
        assert_eq!(
            members(&keeper).len(),
            1,
            "the last member is never removed"
        );
    }

    #[test]
    fn a_node_learns_then_joins_once_caught_up_and_is_trusted_after_a_commit() {
        let mut keeper = ChainKeeper::new(&[node(1)]);
        let mut liveness = Liveness::new(Timing::new(10, 20), &nodes(), 0);
        keeper.report(node(1), report(ChainEpoch::new(1), 50, 40, 1));
        assert!(keeper.decide(&liveness, 1, &nodes()));
        let learner = keeper.chain().learner.expect("a learner").node;
        assert_eq!(learner, node(2));
        let epoch = keeper.chain().epoch;
        keeper.report(learner, report(epoch, 39, 0, 0));
        assert!(
            !keeper.decide(&liveness, 2, &nodes()),
            "behind the committed offset"
        );
        keeper.report(learner, report(epoch, 40, 0, 0));
        assert!(keeper.decide(&liveness, 3, &nodes()));
        assert_eq!(members(&keeper), vec![1, 2], "promoted to tail");
        keeper.decide(&liveness, 4, &nodes()); // node 3 attaches as the learner
        // Until a head commits in an epoch that includes node 2, node 2 may lack committed
        // offsets: the head, silent, must stay.
        beat(&mut liveness, 30, &[1]);
        for now in 30..40 {
            keeper.decide(&liveness, now, &nodes());
        }
        assert!(
            keeper.chain().is_member(node(1)),
            "the only trusted member stays"
        );
        let epoch = keeper.chain().epoch;
        keeper.report(node(1), report(epoch, 60, 60, epoch.value()));
        beat(&mut liveness, 40, &[1]);
        keeper.decide(&liveness, 41, &nodes());
        assert!(!keeper.chain().is_member(node(1)), "now it may go");
        assert_eq!(keeper.chain().head(), node(2));
    }

    #[test]
    fn registration_opens_an_epoch_and_detaches_the_node() {
        let mut keeper = ChainKeeper::new(&nodes());
        let epoch = keeper.register(node(2));
        assert_eq!(epoch, ChainEpoch::new(2));
        assert_eq!(members(&keeper), vec![1, 3]);
        let mut alone = ChainKeeper::new(&[node(1)]);
        assert_eq!(
            alone.register(node(1)),
            ChainEpoch::new(2),
            "a new epoch even alone"
        );
        assert_eq!(members(&alone), vec![1]);
    }
}
