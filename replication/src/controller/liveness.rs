//! Which nodes the controller has heard from, and the leases that follows from.
//!
//! A node holds a lease for `lease_ms` after the controller answered its heartbeat; the
//! controller treats it as gone only after `silence_ms` (longer than the lease) without a
//! heartbeat. A node therefore stops acting as head (its lease lapsed) before the
//! controller can replace it, as long as clocks advance at about the same rate.

use std::collections::BTreeMap;

use crate::ids::NodeId;

/// The lease and the silence after which a node is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub lease_ms: u64,
    pub silence_ms: u64,
}

impl Timing {
    /// # Panics
    /// When the silence window is not longer than the lease.
    pub fn new(lease_ms: u64, silence_ms: u64) -> Timing {
        assert!(
            silence_ms > lease_ms,
            "a node must lose its lease ({lease_ms} ms) before the controller gives up on it \
             ({silence_ms} ms)"
        );
        Timing {
            lease_ms,
            silence_ms,
        }
    }
}

/// When the controller last heard from each node.
#[derive(Clone, Debug)]
pub struct Liveness {
    timing: Timing,
    heard_ms: BTreeMap<NodeId, u64>,
}

impl Liveness {
    /// Every node in `nodes` counts as heard at `now_ms` (a controller that just took over
    /// gives each node a full silence window).
    pub fn new(timing: Timing, nodes: &[NodeId], now_ms: u64) -> Liveness {
        Liveness {
            timing,
            heard_ms: nodes.iter().map(|&node| (node, now_ms)).collect(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn heard(&mut self, node: NodeId, now_ms: u64) {
        let heard = self.heard_ms.entry(node).or_insert(now_ms);
        *heard = (*heard).max(now_ms);
    }

    /// True when `node` was ever heard from (or counted as heard at the start).
    pub fn knows(&self, node: NodeId) -> bool {
        self.heard_ms.contains_key(&node)
    }

    /// True when nothing came from `node` for longer than the silence window.
    pub fn silent(&self, node: NodeId, now_ms: u64) -> bool {
        self.heard_ms
            .get(&node)
            .is_none_or(|&heard| now_ms.saturating_sub(heard) > self.timing.silence_ms)
    }

    /// `node`'s process is gone (connecting to it is refused): unless it was heard from
    /// within the last `recent_ms` (it restarted, and the refusal is older), it counts as
    /// silent from now, without waiting out the silence window or a new leader's grace. A
    /// dead process holds no lease it can act on, and a restarted one registers anew.
    /// Returns true when that changed anything.
    pub fn gone(&mut self, node: NodeId, now_ms: u64, recent_ms: u64) -> bool {
        let silent_since = now_ms.saturating_sub(self.timing.silence_ms + 1);
        let Some(heard) = self.heard_ms.get_mut(&node) else {
            return false;
        };
        let heard_lately = *heard <= now_ms && now_ms - *heard <= recent_ms;
        if heard_lately || *heard <= silent_since {
            return false;
        }
        *heard = silent_since;
        true
    }

    /// True when `node` was heard from within a lease.
    pub fn fresh(&self, node: NodeId, now_ms: u64) -> bool {
        self.heard_ms
            .get(&node)
            .is_some_and(|&heard| now_ms.saturating_sub(heard) <= self.timing.lease_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_stale_after_a_lease_and_gone_after_the_silence() {
        let node = NodeId::new(1);
        let mut liveness = Liveness::new(Timing::new(10, 20), &[node], 100);
        assert!(liveness.fresh(node, 110) && !liveness.silent(node, 120));
        assert!(!liveness.fresh(node, 111));
        assert!(liveness.silent(node, 121));
        liveness.heard(node, 121);
        assert!(liveness.fresh(node, 121));
        assert!(liveness.silent(NodeId::new(2), 0), "never heard");
    }

    #[test]
    fn a_refusing_node_is_gone_at_once_unless_heard_lately() {
        let (dead, restarted) = (NodeId::new(1), NodeId::new(2));
        // A new leader's grace counts both as heard in the future.
        let mut liveness = Liveness::new(Timing::new(10, 20), &[dead, restarted], 150);
        liveness.heard(restarted, 100);
        assert!(
            liveness.gone(dead, 100, 5),
            "the grace does not shield a dead process"
        );
        assert!(liveness.silent(dead, 100));
        assert!(!liveness.gone(dead, 101, 5), "already silent");
        // Heard 3 ms ago (a restart registering while the refusal is older): kept.
        let mut liveness = Liveness::new(Timing::new(10, 20), &[restarted], 0);
        liveness.heard(restarted, 97);
        assert!(!liveness.gone(restarted, 100, 5));
        assert!(!liveness.silent(restarted, 100));
        assert!(liveness.gone(restarted, 103, 5));
        assert!(liveness.silent(restarted, 103));
    }
}
