//! This node's standing with the controller leader: it registers once per start, then
//! heartbeats, and holds a lease while answers keep coming.
//!
//! Pure, like the cores it serves: the host passes the time and routes what [`Membership`]
//! asks to send to the leader (itself included). A lease counts from when the heartbeat
//! that earned it was sent, not from when the answer came, so a slow answer can only
//! shorten it; and it is good only once this node's copy of the cluster state has applied
//! the index the leader had applied when it answered (see `controller_node`).

use std::collections::VecDeque;

use crate::controller::{Endpoint, HeartbeatAnswer};

/// Heartbeats remembered while their answers are outstanding; an answer to an older one
/// is ignored (its lease would have lapsed anyway).
const OUTSTANDING_MAX: usize = 32;

/// What this node asks the controller leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Register {
        kafka: Endpoint,
        internal: Endpoint,
        incarnation: u64,
    },
    Heartbeat {
        id: u64,
    },
}

/// A lease the leader granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// When it lapses, on the host's clock.
    pub until_ms: u64,
    /// The log index this node must have applied before using it.
    pub applied_index: u64,
}

/// Registration, heartbeats and the lease of one node.
#[derive(Debug)]
pub struct Membership {
    kafka: Endpoint,
    internal: Endpoint,
    incarnation: u64,
    interval_ms: u64,
    registered: bool,
    next_send_ms: u64,
    next_id: u64,
    outstanding: VecDeque<(u64, u64)>,
    lease: Option<Lease>,
}

impl Membership {
    /// A node that has not registered in this run (`incarnation`, which differs between
    /// runs), heartbeating every `interval_ms` once it has.
    pub fn new(
        kafka: Endpoint,
        internal: Endpoint,
        incarnation: u64,
        interval_ms: u64,
    ) -> Membership {
        Membership {
            kafka,
            internal,
            incarnation,
            interval_ms: interval_ms.max(1),
            registered: false,
            next_send_ms: 0,
            next_id: 1,
            outstanding: VecDeque::new(),
            lease: None,
        }
    }

    /// What to send the leader now, if anything: a registration until one is confirmed
    /// (retried every interval), then a heartbeat every interval. Nothing while no leader
    /// is known.
    pub fn poll(&mut self, now_ms: u64, leader_known: bool) -> Option<Request> {
        if !leader_known || now_ms < self.next_send_ms {
            return None;
        }
        self.next_send_ms = now_ms + self.interval_ms;
        if !self.registered {
            return Some(Request::Register {
                kafka: self.kafka.clone(),
                internal: self.internal.clone(),
                incarnation: self.incarnation,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        if self.outstanding.len() == OUTSTANDING_MAX {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((id, now_ms));
        Some(Request::Heartbeat { id })
    }

    /// The leader applied this run's registration: heartbeats start now.
    pub fn registered(&mut self, now_ms: u64) {
        self.registered = true;
        self.next_send_ms = now_ms;
    }

    /// The leader's answer to heartbeat `id`.
    pub fn answer(&mut self, id: u64, answer: &HeartbeatAnswer) {
        let Some(at) = self.outstanding.iter().position(|(sent, _)| *sent == id) else {
            return; // unknown, or too old to matter
        };
        let (_, sent_ms) = self.outstanding[at];
        // Older heartbeats' answers can only grant shorter leases.
        self.outstanding.drain(..=at);
        match *answer {
            HeartbeatAnswer::Lease {
                lease_ms,
                applied_index,
            } => {
                let lease = Lease {
                    until_ms: sent_ms + lease_ms,
                    applied_index,
                };
                if self.lease.is_none_or(|held| held.until_ms < lease.until_ms) {
                    self.lease = Some(lease);
                }
            }
            HeartbeatAnswer::Unregistered => {
                // Fenced, or the leader never saw this run's registration.
                self.registered = false;
                self.lease = None;
                self.outstanding.clear();
                self.next_send_ms = 0;
            }
            HeartbeatAnswer::NotLeader { .. } => {}
        }
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// The lease, if one is held at `now_ms` and usable with `applied_index` applied.
    pub fn lease(&self, now_ms: u64, applied_index: u64) -> Option<Lease> {
        self.lease
            .filter(|lease| now_ms < lease.until_ms && applied_index >= lease.applied_index)
    }

    /// The lease last granted, usable or not.
    pub fn last_lease(&self) -> Option<Lease> {
        self.lease
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership() -> Membership {
        let endpoint = |port| Endpoint {
            host: "127.0.0.1".to_owned(),
            port,
        };
        Membership::new(endpoint(9092), endpoint(19092), 1, 100)
    }

    fn lease(lease_ms: u64, applied_index: u64) -> HeartbeatAnswer {
        HeartbeatAnswer::Lease {
            lease_ms,
            applied_index,
        }
    }

    #[test]
    fn registers_until_confirmed_then_heartbeats_every_interval() {
        let mut member = membership();
        assert_eq!(member.poll(0, false), None, "no leader, nothing to send");
        assert!(matches!(
            member.poll(0, true),
            Some(Request::Register { .. })
        ));
        assert_eq!(member.poll(50, true), None);
        assert!(matches!(
            member.poll(100, true),
            Some(Request::Register { .. })
        ));
        member.registered(120);
        assert_eq!(member.poll(120, true), Some(Request::Heartbeat { id: 1 }));
        assert_eq!(member.poll(200, true), None);
        assert_eq!(member.poll(220, true), Some(Request::Heartbeat { id: 2 }));
    }

    #[test]
    fn a_lease_counts_from_the_send_and_waits_for_the_applied_index() {
        let mut member = membership();
        member.registered(0);
        assert_eq!(member.poll(0, true), Some(Request::Heartbeat { id: 1 }));
        member.answer(1, &lease(300, 7));
        assert_eq!(member.lease(250, 6), None, "index 7 not applied yet");
        assert!(member.lease(250, 7).is_some());
        assert_eq!(member.lease(300, 7), None, "counted from the send at 0");
        // An answer to an older heartbeat cannot shorten a newer lease.
        assert_eq!(member.poll(100, true), Some(Request::Heartbeat { id: 2 }));
        assert_eq!(member.poll(200, true), Some(Request::Heartbeat { id: 3 }));
        member.answer(3, &lease(300, 7));
        member.answer(2, &lease(300, 7));
        assert_eq!(member.last_lease().map(|l| l.until_ms), Some(500));
    }

    #[test]
    fn unregistered_drops_the_lease_and_registers_again() {
        let mut member = membership();
        member.registered(0);
        member.poll(0, true);
        member.answer(1, &lease(300, 1));
        assert_eq!(member.poll(100, true), Some(Request::Heartbeat { id: 2 }));
        member.answer(2, &HeartbeatAnswer::Unregistered);
        assert!(!member.is_registered());
        assert_eq!(member.lease(150, 1), None);
        assert!(matches!(
            member.poll(150, true),
            Some(Request::Register { .. })
        ));
    }
}
