//! The shard's log cleaner and the partition marks it and DeleteRecords keep.
//!
//! At most one cleaning pass runs per shard, as a task in a task queue of its own with a
//! small share of the executor (the shard loop's queue has a hundred times more), so a
//! pass takes the CPU and disk only while appends and fetches leave them idle. The loop
//! polls the pass beside its other work and installs its result when it ends. While a pass
//! cleans a partition, retention and cuts of that partition wait (they would remove the
//! segments the pass is rewriting); appends and reads go on.
//!
//! Passes start on the housekeeping tick, for the compacted partition with the highest
//! dirty ratio that [`PartitionLog::cleanable`] accepts, and at once for a pass asked for
//! by hand ([`Shard::request_clean`]), which ignores `min.cleanable.dirty.ratio`.
//!
//! A partition's marks (log start, cleaner checkpoint, next tombstone horizon) are written
//! by jobs that take the slot's marks lock in turn, so they land in the order they were
//! made.

use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use glommio::TaskQueueHandle;

use crate::cleaner::{CleanError, CleanLimits, CleanOutcome, CleanStats, clean};
use crate::ids::PartitionId;
use crate::offset::Offset;
use crate::partition::ReadError;
use crate::partition_marks::PartitionMarks;
use crate::request::{CleanReply, Reply};

use super::{Shard, now_ms};

/// The cleaner queue's shares, against the shard loop's 10 000.
const CLEANER_SHARES: usize = 100;
/// Passes asked for by hand that may wait for the running one; more are refused.
const FORCED_WAITING_MAX: usize = 64;

/// The shard's cleaner: the running pass, the passes asked for, and totals.
pub(super) struct Cleaner {
    queue: Option<TaskQueueHandle>,
    running: Option<Running>,
    forced: VecDeque<(PartitionId, Reply<CleanReply>)>,
    totals: CleanStats,
    failures: u64,
}

struct Running {
    partition: PartitionId,
    pass: LocalBoxFuture<'static, Result<CleanOutcome, CleanError>>,
    replies: Vec<Reply<CleanReply>>,
}

/// A pass that ended, for the loop to install.
pub(super) struct PassEnded {
    partition: PartitionId,
    result: Result<CleanOutcome, CleanError>,
    replies: Vec<Reply<CleanReply>>,
}

impl Cleaner {
    pub(super) fn new() -> Cleaner {
        Cleaner {
            queue: None,
            running: None,
            forced: VecDeque::new(),
            totals: CleanStats::default(),
            failures: 0,
        }
    }

    /// True while a pass rewrites `partition`'s segments.
    pub(super) fn is_cleaning(&self, partition: PartitionId) -> bool {
        self.running
            .as_ref()
            .is_some_and(|running| running.partition == partition)
    }

    /// Ready once the running pass ends.
    pub(super) fn poll_ended(&mut self, cx: &mut Context<'_>) -> Poll<PassEnded> {
        let Some(running) = self.running.as_mut() else {
            return Poll::Pending;
        };
        let Poll::Ready(result) = running.pass.poll_unpin(cx) else {
            return Poll::Pending;
        };
        let running = self.running.take().expect("polled above");
        Poll::Ready(PassEnded {
            partition: running.partition,
            result,
            replies: running.replies,
        })
    }

    /// Every pass's totals, and how many failed.
    pub(super) fn totals(&self) -> (CleanStats, u64) {
        (self.totals, self.failures)
    }

    /// Cancels the pass over `partition` (the partition is going away) and refuses the
    /// passes asked for it. A cancelled pass leaves `.cleaned` files, or a committed swap,
    /// for the next open's recovery.
    pub(super) fn cancel(&mut self, partition: PartitionId, why: &str) {
        if self.is_cleaning(partition) {
            let running = self.running.take().expect("checked above");
            for reply in running.replies {
                let _ = reply.send(Err(why.to_string()));
            }
        }
        let (doomed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.forced)
            .into_iter()
            .partition(|(waiting, _)| *waiting == partition);
        self.forced = kept.into();
        for (_, reply) in doomed {
            let _ = reply.send(Err(why.to_string()));
        }
    }

    /// Cancels everything (the shard stops).
    pub(super) fn cancel_all(&mut self, why: &str) {
        if let Some(running) = self.running.take() {
            for reply in running.replies {
                let _ = reply.send(Err(why.to_string()));
            }
        }
        for (_, reply) in self.forced.drain(..) {
            let _ = reply.send(Err(why.to_string()));
        }
    }

    fn queue(&mut self) -> Option<TaskQueueHandle> {
        if self.queue.is_none() {
            self.queue = Some(glommio::executor().create_task_queue(
                glommio::Shares::Static(CLEANER_SHARES),
                glommio::Latency::NotImportant,
                "log-cleaner",
            ));
        }
        self.queue
    }
}

impl Shard {
    /// A pass over `partition` asked for by hand: started now if the cleaner is idle,
    /// otherwise once it is. Answered with what the pass did (nothing when no closed
    /// segment is past the checkpoint).
    pub(super) fn request_clean(&mut self, partition: PartitionId, reply: Reply<CleanReply>) {
        if self.stopping {
            let _ = reply.send(Err("the shard is shutting down".to_string()));
            return;
        }
        let Some(slot) = self.partitions.get(&partition) else {
            let _ = reply.send(Err(format!("partition {partition} is not on this shard")));
            return;
        };
        if !slot.log.config().compacted() {
            let _ = reply.send(Err(format!(
                "{} is not compacted: its cleanup.policy does not include compact",
                slot.log.label()
            )));
            return;
        }
        if self.cleaner.forced.len() >= FORCED_WAITING_MAX {
            let _ = reply.send(Err(format!(
                "{FORCED_WAITING_MAX} cleaning passes already wait on this shard"
            )));
            return;
        }
        self.cleaner.forced.push_back((partition, reply));
        self.start_cleaning(false);
    }

    /// Starts the next pass if the cleaner is idle: a pass asked for by hand first, then
    /// (when `scheduled`, on the housekeeping tick) the filthiest cleanable partition.
    pub(super) fn start_cleaning(&mut self, scheduled: bool) {
        if self.stopping || self.cleaner.running.is_some() {
            return;
        }
        let now = now_ms();
        while let Some((partition, reply)) = self.cleaner.forced.pop_front() {
            let plan = self
                .partitions
                .get(&partition)
                .filter(|slot| slot.cut.is_none())
                .map(|slot| slot.log.cleanable(now, true));
            match plan {
                None => {
                    let _ = reply.send(Err(format!(
                        "partition {partition} is gone or being cut back"
                    )));
                }
                Some(None) => {
                    let _ = reply.send(Ok(CleanStats::default()));
                }
                Some(Some(plan)) => {
                    // Others waiting for the same partition share this pass.
                    let mut replies = vec![reply];
                    let (same, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.cleaner.forced)
                        .into_iter()
                        .partition(|(waiting, _)| *waiting == partition);
                    self.cleaner.forced = rest.into();
                    replies.extend(same.into_iter().map(|(_, reply)| reply));
                    self.start_pass(partition, &plan, now, replies);
                    return;
                }
            }
        }
        if !scheduled {
            return;
        }
        let filthiest = self
            .partitions
            .iter()
            .filter(|(_, slot)| slot.cut.is_none())
            .filter_map(|(partition, slot)| Some((*partition, slot.log.cleanable(now, false)?)))
            .max_by(|(_, a), (_, b)| a.dirty_ratio.total_cmp(&b.dirty_ratio));
        if let Some((partition, plan)) = filthiest {
            self.start_pass(partition, &plan, now, Vec::new());
        }
    }

    fn start_pass(
        &mut self,
        partition: PartitionId,
        plan: &crate::clean_plan::Cleanable,
        now: i64,
        replies: Vec<Reply<CleanReply>>,
    ) {
        let limits = &self.config.limits;
        let clean_limits = CleanLimits {
            map_bytes_max: limits.cleaner_map_bytes_max,
            decompressed_bytes_max: limits.batch_decompressed_bytes_max,
            read_bytes: limits.cleaner_read_bytes,
            write_buffer_bytes: limits.write_buffer_bytes,
        };
        let slot = self
            .partitions
            .get(&partition)
            .expect("chosen from the map");
        let job = slot.log.clean_job(plan, now, clean_limits);
        tracing::debug!(partition = %job.label, first_dirty = %plan.first_dirty, ratio = plan.dirty_ratio, "cleaning pass starts");
        let pass: LocalBoxFuture<'static, Result<CleanOutcome, CleanError>> =
            match self.cleaner.queue() {
                Some(queue) => match glommio::spawn_local_into(clean(job), queue) {
                    Ok(task) => task.boxed_local(),
                    Err(error) => {
                        let label = slot.log.label().to_string();
                        let detail = format!("cannot start the cleaner task: {error}");
                        async move {
                            Err(CleanError {
                                partition: label,
                                detail,
                            })
                        }
                        .boxed_local()
                    }
                },
                None => clean(job).boxed_local(),
            };
        self.cleaner.running = Some(Running {
            partition,
            pass,
            replies,
        });
    }

    /// Installs an ended pass, stores the partition's new marks, and lets a waiting cut run.
    pub(super) async fn on_pass_ended(&mut self, ended: PassEnded) {
        let PassEnded {
            partition,
            result,
            replies,
        } = ended;
        let answer = match result {
            Ok(outcome) => {
                let stats = outcome.stats;
                self.cleaner.totals.add(&stats);
                if let Some(slot) = self.partitions.get_mut(&partition) {
                    slot.log.install_cleaned(outcome);
                    // Cached batches may be ones the pass thinned.
                    self.cache.remove_partition(partition);
                    tracing::debug!(partition = %slot.log.label(), read = stats.bytes_read, written = stats.bytes_written, removed = stats.records_removed, "cleaning pass done");
                    self.store_marks(partition, None);
                }
                Ok(stats)
            }
            Err(error) => {
                self.cleaner.failures += 1;
                tracing::warn!(%error, "cleaning pass failed; the log is unchanged");
                Err(error.to_string())
            }
        };
        for reply in replies {
            let _ = reply.send(answer.clone());
        }
        self.try_cut(partition).await;
        self.start_cleaning(false);
    }

    /// Moves the partition's log start up to `before` (the high watermark when `None`),
    /// answered with the new log start once the marks are durable.
    pub(super) fn delete_records(
        &mut self,
        partition: PartitionId,
        before: Option<Offset>,
        reply: Reply<Result<Offset, ReadError>>,
    ) {
        if let Err(error) = self.slot(partition) {
            let _ = reply.send(Err(error));
            return;
        }
        let slot = self.partitions.get_mut(&partition).expect("checked above");
        let before = before.unwrap_or(slot.log.offsets().high_watermark);
        match slot.log.delete_records(before) {
            Ok(_) => {
                let log_start = slot.log.offsets().log_start;
                // Records below the start are gone for readers at once; whole segments
                // below it go with the next retention pass.
                self.store_marks(partition, Some((reply, log_start)));
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    /// Writes the partition's marks in a job that waits for earlier writes of them, then
    /// answers `reply`, if given, with `answer`.
    fn store_marks(
        &mut self,
        partition: PartitionId,
        reply: Option<(Reply<Result<Offset, ReadError>>, Offset)>,
    ) {
        let Some(slot) = self.partitions.get(&partition) else {
            return;
        };
        let marks: PartitionMarks = slot.log.marks();
        let dir = slot.log.dir().to_path_buf();
        let label = slot.log.label().to_string();
        let lock = Rc::clone(&slot.marks_lock);
        self.jobs.push(
            async move {
                let _turn = lock.acquire_permit(1).await;
                let stored = marks.store(&dir).await;
                if let Err(error) = &stored {
                    tracing::error!(partition = %label, %error, "cannot store the partition's marks");
                }
                if let Some((reply, log_start)) = reply {
                    let _ = reply.send(stored.map(|()| log_start).map_err(|error| {
                        ReadError::Io {
                            partition: label,
                            path: crate::partition_marks::marks_path(&dir),
                            detail: format!("storing the log start: {error}"),
                        }
                    }));
                }
            }
            .boxed_local(),
        );
    }
}
