//! Reads waiting for a partition to grow: Kafka fetches with `max_wait_ms` park here and
//! are woken by the commit that moves the high watermark past them, never by polling.
//!
//! Bounded: past `max` waits a new one is answered at once (its fetch then returns what it
//! has). A wait whose fetch gave up (its receiver dropped) is swept out when room is needed.

use ahash::AHashMap;

use crate::ids::PartitionId;
use crate::offset::Offset;
use crate::request::Reply;

pub(crate) struct DataWaits {
    by_partition: AHashMap<PartitionId, Vec<Waiting>>,
    count: usize,
    max: usize,
}

struct Waiting {
    beyond: Offset,
    reply: Reply<()>,
}

impl DataWaits {
    pub(crate) fn new(max: usize) -> DataWaits {
        DataWaits {
            by_partition: AHashMap::new(),
            count: 0,
            max,
        }
    }

    /// Parks `reply` until `partition`'s high watermark passes `beyond`. Answers at once
    /// when it already has, when the partition is unknown (`high_watermark` gives `None`),
    /// or when no room is left.
    pub(crate) fn wait(
        &mut self,
        partition: PartitionId,
        beyond: Offset,
        reply: Reply<()>,
        high_watermark: impl FnOnce(PartitionId) -> Option<Offset>,
    ) {
        let grown = high_watermark(partition).is_none_or(|hw| hw > beyond);
        if grown || !self.make_room() {
            let _ = reply.send(());
            return;
        }
        self.by_partition
            .entry(partition)
            .or_default()
            .push(Waiting { beyond, reply });
        self.count += 1;
    }

    /// Wakes the waits `high_watermark` has passed.
    pub(crate) fn grown(&mut self, partition: PartitionId, high_watermark: Offset) {
        let Some(waiting) = self.by_partition.get_mut(&partition) else {
            return;
        };
        let (ready, still): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(waiting)
            .into_iter()
            .partition(|wait| high_watermark > wait.beyond || wait.reply.is_canceled());
        self.count -= ready.len();
        for wait in ready {
            let _ = wait.reply.send(());
        }
        *waiting = still;
        if waiting.is_empty() {
            self.by_partition.remove(&partition);
        }
    }

    /// Drops the waits of a deleted partition; their fetches see the reply cancelled.
    pub(crate) fn remove_partition(&mut self, partition: PartitionId) {
        if let Some(waiting) = self.by_partition.remove(&partition) {
            self.count -= waiting.len();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// True when a new wait fits, after sweeping out abandoned ones if needed.
    fn make_room(&mut self) -> bool {
        if self.count < self.max {
            return true;
        }
        self.by_partition.retain(|_, waiting| {
            waiting.retain(|wait| !wait.reply.is_canceled());
            !waiting.is_empty()
        });
        self.count = self.by_partition.values().map(Vec::len).sum();
        self.count < self.max
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures::channel::oneshot;

    use super::*;
    use crate::ids::TopicId;

    fn at(offset: u64) -> Offset {
        Offset::ZERO.plus(offset)
    }

    fn partition() -> PartitionId {
        PartitionId::new(TopicId::new(1), 0)
    }

    #[test]
    fn a_wait_is_answered_when_the_high_watermark_passes_it() {
        let mut waits = DataWaits::new(4);
        let (reply, mut answer) = oneshot::channel();
        waits.wait(partition(), at(5), reply, |_| Some(at(5)));
        assert_eq!(waits.len(), 1);
        waits.grown(partition(), at(5));
        assert_eq!(answer.try_recv().unwrap(), None);
        waits.grown(partition(), at(6));
        assert_eq!(answer.try_recv().unwrap(), Some(()));
        assert_eq!(waits.len(), 0);
    }

    #[test]
    fn a_wait_already_satisfied_or_for_an_unknown_partition_is_answered_at_once() {
        let mut waits = DataWaits::new(4);
        let (reply, mut answer) = oneshot::channel();
        waits.wait(partition(), at(5), reply, |_| Some(at(9)));
        assert_eq!(answer.try_recv().unwrap(), Some(()));
        let (reply, mut answer) = oneshot::channel();
        waits.wait(partition(), at(5), reply, |_| None);
        assert_eq!(answer.try_recv().unwrap(), Some(()));
        assert_eq!(waits.len(), 0);
    }

    #[test]
    fn past_the_bound_a_wait_is_answered_at_once_unless_abandoned_ones_make_room() {
        let mut waits = DataWaits::new(2);
        let hw = |_| Some(at(0));
        let (first, first_answer) = oneshot::channel();
        let (second, _second_answer) = oneshot::channel();
        waits.wait(partition(), at(0), first, hw);
        waits.wait(partition(), at(0), second, hw);
        let (third, mut third_answer) = oneshot::channel();
        waits.wait(partition(), at(0), third, hw);
        assert_eq!(third_answer.try_recv().unwrap(), Some(()));
        assert_eq!(waits.len(), 2);
        drop(first_answer);
        let (fourth, mut fourth_answer) = oneshot::channel();
        waits.wait(partition(), at(0), fourth, hw);
        assert_eq!(fourth_answer.try_recv().unwrap(), None);
        assert_eq!(waits.len(), 2);
    }

    #[test]
    fn removing_a_partition_cancels_its_waits() {
        let mut waits = DataWaits::new(2);
        let (reply, mut answer) = oneshot::channel();
        waits.wait(partition(), at(0), reply, |_| Some(at(0)));
        waits.remove_partition(partition());
        assert!(answer.try_recv().is_err());
        assert_eq!(waits.len(), 0);
    }
}
