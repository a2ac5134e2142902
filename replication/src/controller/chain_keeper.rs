//! The controller's decisions about one partition's chain, from what nodes report.
//!
//! Rules (each one a failure the chain simulation found without it):
//! - a node silent for longer than the silence window leaves the chain, but never the last
//!   member known to hold every committed offset;
//! - a restarted node registers, which always opens a new epoch (a head's entries before
//!   and after a restart must not share one), and is detached unless no other member is
//!   known to hold every committed offset;
//! - a live node outside the chain attaches as the learner, while the chain is shorter than
//!   the topic's replication factor;
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

/// The part of a partition's chain state that the controller quorum replicates: the chain
/// and what decides which members may leave it. Everything here changes only through the
/// controller's log, so every controller node holds the same record.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ChainRecord {
    pub chain: Chain,
    /// The epoch each member was promoted from learner in (first members: none).
    pub promoted_in: BTreeMap<NodeId, ChainEpoch>,
    /// The highest epoch in which a head is known to have committed.
    pub commit_epoch: ChainEpoch,
}

impl ChainRecord {
    /// A new partition's chain of `members`, head first, in epoch 1.
    pub fn new(members: &[NodeId]) -> ChainRecord {
        let epoch = ChainEpoch::new(1);
        let members = members
            .iter()
            .map(|&node| Member { node, since: epoch })
            .collect();
        ChainRecord {
            chain: Chain::new(epoch, members, None),
            promoted_in: BTreeMap::new(),
            commit_epoch: ChainEpoch::default(),
        }
    }

    /// A restarted node registers: opens a new epoch, detaching the node unless no other
    /// member is known to hold every committed offset. Returns the epoch from which the
    /// node may act.
    pub fn register(&mut self, node: NodeId) -> ChainEpoch {
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

/// One partition's chain and the controller's knowledge about it: the replicated
/// [`ChainRecord`] and what the nodes' latest reports say (known only where they arrive).
#[derive(Clone, Debug)]
pub struct ChainKeeper {
    record: ChainRecord,
    /// The highest committed offset any replica reported.
    committed: Offset,
    reports: BTreeMap<NodeId, ReplicaReport>,
    /// The chain's length to keep (the topic's replication factor): a live node outside
    /// the chain attaches as the learner only while the chain is shorter.
    factor: usize,
}

impl ChainKeeper {
    /// A new partition's chain of `members`, head first, in epoch 1.
    pub fn new(members: &[NodeId]) -> ChainKeeper {
        ChainKeeper::from_record(ChainRecord::new(members))
    }

    /// A keeper over a replicated record, with no reports yet.
    pub fn from_record(record: ChainRecord) -> ChainKeeper {
        ChainKeeper {
            record,
            committed: Offset::ZERO,
            reports: BTreeMap::new(),
            factor: usize::MAX,
        }
    }

    /// Keeps the chain at `factor` members (without it, every live node joins).
    #[must_use]
    pub fn with_factor(mut self, factor: usize) -> ChainKeeper {
        self.factor = factor.max(1);
        self
    }

    pub fn chain(&self) -> &Chain {
        &self.record.chain
    }

    /// The replicated part, as the decisions so far left it.
    pub fn record(&self) -> &ChainRecord {
        &self.record
    }

    /// Takes the record the controller's log settled on. Reports stay, and a commit epoch
    /// learnt from them that the record does not carry yet is kept: it is still true.
    pub fn adopt(&mut self, record: ChainRecord) {
        let commit_epoch = self.record.commit_epoch.max(record.commit_epoch);
        self.record = record;
        self.record.commit_epoch = commit_epoch;
    }

    /// Takes a node's report on its replica.
    pub fn report(&mut self, node: NodeId, report: ReplicaReport) {
        self.committed = self.committed.max(report.committed);
        self.record.commit_epoch = self.record.commit_epoch.max(report.committed_in);
        self.reports.insert(node, report);
    }

    /// A restarted node registers: returns the epoch from which it may act.
    pub fn register(&mut self, node: NodeId) -> ChainEpoch {
        self.reports.remove(&node);
        self.record.register(node)
    }

    /// Applies the rules once; returns true when the chain changed.
    pub fn decide(&mut self, liveness: &Liveness, now_ms: u64, nodes: &[NodeId]) -> bool {
        match self.next_record(liveness, now_ms, nodes) {
            Some(record) => {
                self.record = record;
                true
            }
            None => false,
        }
    }

    /// The record the rules call for next, when they change the chain; the keeper stays
    /// as it is (the controller leader proposes the record and adopts it once applied).
    pub fn next_record(
        &self,
        liveness: &Liveness,
        now_ms: u64,
        nodes: &[NodeId],
    ) -> Option<ChainRecord> {
        let mut members = self.record.chain.members.clone();
        let mut learner = self
            .record
            .chain
            .learner
            .filter(|l| !liveness.silent(l.node, now_ms));
        if let Some(gone) = members.iter().position(|m| liveness.silent(m.node, now_ms))
            && self.record.may_remove(&members, members[gone].node)
        {
            members.remove(gone);
        }
        let next = self.record.chain.epoch.next();
        if learner.is_none()
            && members.len() < self.factor
            && let Some(&node) = nodes.iter().find(|&&node| {
                !members.iter().any(|m| m.node == node) && !liveness.silent(node, now_ms)
            })
        {
            learner = Some(Member { node, since: next });
        }
        let mut promoted = None;
        if let Some(l) = learner
            && self.caught_up(l, liveness, now_ms, &members)
        {
            promoted = Some(l.node);
            members.push(l);
            learner = None;
        }
        let chain = &self.record.chain;
        if members == chain.members && learner == chain.learner {
            return None;
        }
        let mut record = self.record.clone();
        if let Some(node) = promoted {
            record.promoted_in.insert(node, next);
        }
        record.install(members, learner);
        Some(record)
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
            report.epoch == self.record.chain.epoch && report.durable_end >= self.committed
        });
        head_fresh
            && ready
            && learner.since <= self.record.chain.epoch
            && !liveness.silent(learner.node, now_ms)
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
    fn a_chain_grows_only_to_its_replication_factor() {
        let mut keeper = ChainKeeper::new(&[node(1), node(2)]).with_factor(2);
        let mut liveness = Liveness::new(Timing::new(10, 20), &nodes(), 0);
        beat(&mut liveness, 5, &[]);
        assert!(
            !keeper.decide(&liveness, 6, &nodes()),
            "a full chain takes no learner: {:?}",
            keeper.chain()
        );
        // Node 2 falls silent and leaves: node 3 attaches to bring the chain back to two.
        beat(&mut liveness, 15, &[2]);
        assert!(keeper.decide(&liveness, 30, &nodes()));
        assert_eq!(members(&keeper), vec![1]);
        assert_eq!(keeper.chain().learner.map(|l| l.node), Some(node(3)));
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
