//! Unit tests of the replica: small chains with every action carried out at once.

use super::*;
use crate::chain::Member;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    id: u64,
    epoch: ChainEpoch,
}

impl Entry for Item {
    fn offsets(&self) -> u64 {
        1
    }

    fn epoch(&self) -> ChainEpoch {
        self.epoch
    }

    fn set_epoch(&mut self, epoch: ChainEpoch) {
        self.epoch = epoch;
    }
}

fn item(id: u64) -> Item {
    Item {
        id,
        epoch: ChainEpoch::default(),
    }
}

fn ids(log: &[Item]) -> Vec<u64> {
    log.iter().map(|item| item.id).collect()
}

fn node(id: u32) -> NodeId {
    NodeId::new(id)
}

fn offset(value: i64) -> Offset {
    Offset::new(value).expect("non-negative")
}

fn chain(epoch: u64, members: &[u32], learner: Option<u32>) -> Chain {
    let epoch = ChainEpoch::new(epoch);
    let member = |id: u32| Member {
        node: node(id),
        since: ChainEpoch::new(1),
    };
    Chain::new(
        epoch,
        members.iter().map(|&id| member(id)).collect(),
        learner.map(member),
    )
}

/// Replicas 1, 2, 3 on `chain`, with every action carried out at once: messages
/// delivered, syncs completed, reads answered from the logs kept here.
struct Cluster {
    replicas: Vec<Replica<Item>>,
    logs: Vec<Vec<Item>>,
    /// `Committed` reports: (replica index, offset).
    committed: Vec<(usize, Offset)>,
    /// Messages from the first node to the second are lost.
    drop: Option<(NodeId, NodeId)>,
}

impl Cluster {
    fn new(chain: &Chain) -> Cluster {
        let mut cluster = Cluster {
            replicas: (1..=3)
                .map(|id| Replica::new(node(id), Limits::default()))
                .collect(),
            logs: vec![Vec::new(); 3],
            committed: Vec::new(),
            drop: None,
        };
        for index in 0..3 {
            cluster.replicas[index].reconfigure(chain.clone());
            cluster.replicas[index].set_lease(true);
        }
        cluster.settle();
        cluster
    }

    fn settle(&mut self) {
        for _ in 0..100 {
            let mut busy = false;
            for index in 0..3 {
                for action in self.replicas[index].take_actions() {
                    busy = true;
                    self.act(index, action);
                }
            }
            if !busy {
                return;
            }
        }
        panic!("the cluster did not settle");
    }

    fn act(&mut self, index: usize, action: Action<Item>) {
        match action {
            Action::Send(envelope) if Some((envelope.from, envelope.to)) == self.drop => {}
            Action::Send(envelope) => {
                let to = usize::try_from(envelope.to.value()).expect("small") - 1;
                self.replicas[to].receive(envelope);
            }
            Action::Append { start, entries } => {
                let start = usize::try_from(start.value()).expect("small");
                assert_eq!(start, self.logs[index].len(), "appends at the end");
                self.logs[index].extend(entries);
            }
            Action::Sync { end, .. } => self.replicas[index].synced(end),
            Action::Truncate { end } => {
                self.logs[index].truncate(usize::try_from(end.value()).expect("small"));
            }
            Action::Read { start } => {
                let from = usize::try_from(start.value()).expect("small");
                let entries = self.logs[index][from..].to_vec();
                self.replicas[index].read_done(start, entries);
            }
            Action::Committed(end) => self.committed.push((index, end)),
        }
    }
}

#[test]
fn an_append_commits_once_every_member_holds_it_durably() {
    let mut cluster = Cluster::new(&chain(1, &[1, 2, 3], None));
    assert_eq!(cluster.replicas[0].append(item(7)), Ok(offset(0)));
    cluster.settle();
    assert_eq!(cluster.committed, vec![(0, offset(1))]);
    for log in &cluster.logs {
        assert_eq!(ids(log), vec![7]);
    }
    assert_eq!(
        cluster.replicas[2].committed(),
        Offset::ZERO,
        "learned with the next append"
    );
    let refused = cluster.replicas[1].append(item(8));
    assert_eq!(refused, Err(AppendRefused::NotHead { node: node(2) }));
}

#[test]
fn without_the_tails_acknowledgement_nothing_commits() {
    let mut cluster = Cluster::new(&chain(1, &[1, 2, 3], None));
    cluster.drop = Some((node(3), node(2))); // the tail's acknowledgements are lost
    cluster.replicas[0].append(item(1)).expect("head");
    cluster.settle();
    assert!(cluster.committed.is_empty());
    assert_eq!(ids(&cluster.logs[2]), vec![1], "the tail holds it");
    cluster.drop = None;
    cluster.replicas[2].tick();
    for _ in 0..Limits::default().resend_ticks {
        cluster.replicas[2].tick();
    }
    cluster.settle();
    assert_eq!(
        cluster.committed,
        vec![(0, offset(1))],
        "the resent acknowledgement commits"
    );
}

#[test]
fn a_head_without_a_lease_takes_and_commits_nothing() {
    let mut cluster = Cluster::new(&chain(1, &[1, 2, 3], None));
    cluster.replicas[0].append(item(1)).expect("head");
    cluster.replicas[0].set_lease(false);
    cluster.settle();
    assert!(cluster.committed.is_empty(), "acknowledged without a lease");
    let refused = cluster.replicas[0].append(item(2));
    assert_eq!(refused, Err(AppendRefused::LeaseLapsed { node: node(1) }));
    cluster.replicas[0].set_lease(true);
    cluster.settle();
    assert_eq!(cluster.committed, vec![(0, offset(1))]);
}

#[test]
fn messages_of_another_epoch_are_refused() {
    let mut cluster = Cluster::new(&chain(2, &[1, 2, 3], None));
    let stale = Envelope {
        from: node(1),
        to: node(2),
        message: Message::Append {
            epoch: ChainEpoch::new(1),
            seq: 100,
            start: Offset::ZERO,
            entries: vec![item(9)],
            committed: Offset::ZERO,
            cut: None,
        },
    };
    cluster.replicas[1].receive(stale);
    cluster.settle();
    assert!(
        cluster.logs[1].is_empty(),
        "a stale head's append was taken"
    );
}

/// A node's log of `len` entries, all appended in epoch 1.
fn recovered(len: i64) -> Recovered {
    Recovered {
        log_end: offset(len),
        log_epochs: vec![(ChainEpoch::new(1), Offset::ZERO)],
        committed: offset(1),
        attached_epoch: Some(ChainEpoch::new(1)),
    }
}

/// Delivers messages between `replicas` until none is left; returns the truncations.
fn exchange(replicas: &mut [Replica<Item>]) -> Vec<(NodeId, Offset)> {
    let mut cuts = Vec::new();
    for _ in 0..100 {
        let mut mail = Vec::new();
        for replica in replicas.iter_mut() {
            let node = replica.node();
            for action in replica.take_actions() {
                match action {
                    Action::Send(envelope) => mail.push(envelope),
                    Action::Truncate { end } => cuts.push((node, end)),
                    Action::Sync { end, .. } => replica.synced(end),
                    _ => {}
                }
            }
        }
        if mail.is_empty() {
            return cuts;
        }
        for envelope in mail {
            let to = replicas.iter_mut().find(|r| r.node() == envelope.to);
            to.expect("a replica per node").receive(envelope);
        }
    }
    panic!("the replicas kept talking");
}

#[test]
fn a_successor_ahead_is_left_alone_until_the_head_writes_over_its_extra_entries() {
    let since = ChainEpoch::new(1);
    let members = vec![
        Member {
            node: node(1),
            since,
        },
        Member {
            node: node(2),
            since,
        },
    ];
    let epoch2 = Chain::new(ChainEpoch::new(2), members, None);
    let mut replicas: Vec<Replica<Item>> = [(1, 2), (2, 3)]
        .into_iter()
        .map(|(id, len)| {
            let mut replica = Replica::recover(node(id), Limits::default(), recovered(len), since);
            replica.reconfigure(epoch2.clone());
            replica.set_lease(true);
            replica
        })
        .collect();
    assert!(
        exchange(&mut replicas).is_empty(),
        "offset 2 may still come"
    );
    replicas[0].append(item(5)).expect("head");
    assert_eq!(
        exchange(&mut replicas),
        vec![(node(2), offset(2))],
        "the head's epoch-2 entry at offset 2 replaces node 2's epoch-1 one"
    );
    assert_eq!(
        replicas[1].log_end(),
        offset(3),
        "and node 2 took the head's"
    );
    assert_eq!(
        replicas[1].log_epochs().last(),
        Some(&(ChainEpoch::new(2), offset(2)))
    );
}

#[test]
fn a_returning_node_cuts_what_was_never_committed_and_catches_up_as_learner() {
    let mut cluster = Cluster::new(&chain(1, &[1, 2, 3], None));
    cluster.replicas[0].append(item(1)).expect("head");
    cluster.settle();
    // Node 1 is cut off; the others move on without it.
    cluster.drop = Some((node(1), node(2)));
    cluster.replicas[0]
        .append(item(99))
        .expect("head, not yet removed");
    cluster.settle();
    cluster.drop = None;
    assert_eq!(ids(&cluster.logs[0]), vec![1, 99]);
    let epoch2 = chain(2, &[2, 3], None);
    cluster.replicas[1].reconfigure(epoch2.clone());
    cluster.replicas[2].reconfigure(epoch2);
    cluster.replicas[1].append(item(2)).expect("new head");
    cluster.settle();
    // Node 1 returns as the learner, attached since epoch 3.
    let mut epoch3 = chain(3, &[2, 3], None);
    epoch3.learner = Some(Member {
        node: node(1),
        since: ChainEpoch::new(3),
    });
    for replica in &mut cluster.replicas {
        replica.reconfigure(epoch3.clone());
    }
    cluster.settle();
    assert_eq!(ids(&cluster.logs[0]), vec![1, 2], "item 99 was cut");
    assert_eq!(cluster.logs[0], cluster.logs[2]);
}
