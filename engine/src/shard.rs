//! A shard: one executor's loop that alone owns a set of partitions, the batch cache and
//! all their I/O.
//!
//! The loop takes one event at a time: a request from any shard's router, a finished group
//! commit, a finished read or deletion, or the housekeeping tick. Handling an event only
//! changes state and starts I/O futures; the futures own what they touch and run beside
//! the loop (polled by it), so no partition state is shared, locked or borrowed across an
//! await. When appends outrun the disk (pending bytes) or reads pile up, the loop stops
//! taking requests and the bounded channel pushes back on the senders.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ahash::AHashMap;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use glommio::timer::Timer;

use crate::batch_cache::{BatchCache, CacheRead};
use crate::config::EngineConfig;
use crate::data_waits::DataWaits;
use crate::group_commit::{CommitProbe, CommitStep, FlushOutcome, GroupCommit, WrittenPlan};
use crate::ids::{PartitionId, ShardId};
use crate::layout;
use crate::metadata::{MetadataSnapshot, TopicMeta, partition_label};
use crate::offset::Offset;
use crate::partition::{
    AppendError, Appended, PartitionLog, PartitionOffsets, ReadError, ReadStart, TruncateError,
};
use crate::recovery::{PartitionSpec, RecoveryReport, open_partition};
use crate::request::{
    AppendOutcome, HeadAppend, ReadLimit, ReadOutcome, Reply, ShardControl, ShardRequest,
    ShardStats, ShutdownReport,
};
use crate::segment::{find_by_timestamp, read_batches, read_records};

mod cleaning;

/// Segments past the first a consumer read may go through when the cleaner emptied
/// every batch it found so far.
const FOLLOWING_SEGMENTS_MAX: usize = 4;

/// Producer snapshots one housekeeping tick may start.
const SNAPSHOTS_PER_TICK_MAX: usize = 16;

/// An append waiting for its group commit.
#[derive(Debug)]
struct AppendWaiter {
    reply: Reply<Result<AppendOutcome, AppendError>>,
    base: Offset,
    last: Offset,
}

#[derive(Debug)]
struct PartitionSlot {
    log: PartitionLog,
    commit: GroupCommit<AppendWaiter>,
    /// Retried idempotent batches whose original is not durable yet; answered with it.
    retries: Vec<AppendWaiter>,
    /// The offset the last producer snapshot covers.
    snapshot_end: Offset,
    /// A cut of the log waiting for its appends to be durable.
    cut: Option<(Offset, Reply<Result<PartitionOffsets, TruncateError>>)>,
    /// Set while a producer snapshot of this partition is being written (a cut waits for
    /// it, so no snapshot of the old log can land after the cut).
    snapshot_writing: Rc<Cell<bool>>,
    /// Taken in turn by the jobs that write the partition's marks.
    marks_lock: Rc<glommio::sync::Semaphore>,
}

impl PartitionSlot {
    fn new(log: PartitionLog, snapshot_end: Offset) -> PartitionSlot {
        PartitionSlot {
            log,
            commit: GroupCommit::default(),
            retries: Vec::new(),
            snapshot_end,
            cut: None,
            snapshot_writing: Rc::new(Cell::new(false)),
            marks_lock: Rc::new(glommio::sync::Semaphore::new(1)),
        }
    }

    /// Every waiting append and retry, for failing them all.
    fn drain_waiters(&mut self) -> Vec<AppendWaiter> {
        let mut waiters = self.commit.drain();
        waiters.append(&mut self.retries);
        waiters
    }
}

/// Whose offsets an append keeps.
#[derive(Clone, Copy, Debug)]
enum AppendSource {
    /// A client's batch: this log assigns its offsets and stamps `leader_epoch`.
    Client { leader_epoch: i32 },
    /// A client's batch at a chain head: as `Client`, refused unless the log ends at
    /// `expected_start` (where the head's replica placed it).
    Head {
        leader_epoch: i32,
        expected_start: Offset,
    },
    /// A chain head's batch, stored at the offsets and epoch it carries.
    Replica,
}

/// One shard's state.
pub(crate) struct Shard {
    id: ShardId,
    config: Rc<EngineConfig>,
    partitions: AHashMap<PartitionId, PartitionSlot>,
    /// Partitions that failed to open: label and reason.
    offline: AHashMap<PartitionId, (String, String)>,
    cache: BatchCache,
    data_waits: DataWaits,
    /// Partitions with a cut waiting (usually none), so finished jobs need not scan every
    /// partition for one.
    cuts_waiting: ahash::AHashSet<PartitionId>,
    pending_write_bytes: usize,
    commits: CommitProbe,
    /// Group commits in flight, each at one of its two steps.
    flushes: FuturesUnordered<LocalBoxFuture<'static, CommitStep>>,
    jobs: FuturesUnordered<LocalBoxFuture<'static, ()>>,
    metadata: Rc<RefCell<Arc<MetadataSnapshot>>>,
    /// Tasks this shard owns and cancels when it shuts down (front end, metadata service).
    tasks: Vec<glommio::Task<()>>,
    /// Set once the shard stops: it then refuses new work and finishes what it holds.
    stopping: bool,
    /// Where the shutdown report goes, when someone asked for one.
    shutdown_reply: Option<flume::Sender<ShutdownReport>>,
    /// True once every sender is gone: no request can arrive any more.
    disconnected: bool,
    cleaner: cleaning::Cleaner,
}

enum Event {
    Request(ShardRequest),
    Control(ShardControl),
    /// The shard set dropped its control sender (it is being torn down without `shutdown`).
    ControlClosed,
    Flushed(CommitStep),
    JobDone,
    Cleaned(cleaning::PassEnded),
    Tick,
    Disconnected,
}

impl Shard {
    /// Opens (recovering) every partition `snapshot` places on shard `id`.
    pub(crate) async fn open(
        id: ShardId,
        config: Rc<EngineConfig>,
        metadata: Rc<RefCell<Arc<MetadataSnapshot>>>,
        clean_shutdown: bool,
    ) -> (Shard, Vec<RecoveryReport>) {
        let mut shard = Shard {
            id,
            cache: BatchCache::new(config.limits.batch_cache_bytes_max),
            data_waits: DataWaits::new(config.limits.data_waits_max),
            cuts_waiting: ahash::AHashSet::new(),
            config,
            partitions: AHashMap::new(),
            offline: AHashMap::new(),
            pending_write_bytes: 0,
            commits: CommitProbe::default(),
            flushes: FuturesUnordered::new(),
            jobs: FuturesUnordered::new(),
            metadata,
            tasks: Vec::new(),
            stopping: false,
            shutdown_reply: None,
            disconnected: false,
            cleaner: cleaning::Cleaner::new(),
        };
        let snapshot = shard.metadata.borrow().clone();
        let mut reports = Vec::new();
        for (topic, index) in snapshot.owned_by(id) {
            if let Some(report) = shard.open_partition(&topic, index, clean_shutdown).await {
                reports.push(report);
            }
        }
        (shard, reports)
    }

    /// Gives the shard a task to own: it is cancelled when the shard shuts down.
    pub(crate) fn own_task(&mut self, task: glommio::Task<()>) {
        self.tasks.push(task);
    }

    /// Runs the loop until a `Shutdown` request has been answered (or every sender is gone).
    pub(crate) async fn run(
        mut self,
        requests: flume::Receiver<ShardRequest>,
        control: flume::Receiver<ShardControl>,
    ) {
        let mut incoming = requests.stream();
        let mut orders = control.stream();
        let mut orders_open = true;
        let interval = Duration::from_millis(self.config.housekeeping_interval_ms.max(1));
        let mut tick = Box::pin(Timer::new(interval));
        loop {
            let accepting = self.accepting();
            let event = std::future::poll_fn(|cx| {
                if orders_open && let Poll::Ready(order) = orders.poll_next_unpin(cx) {
                    return Poll::Ready(order.map_or(Event::ControlClosed, Event::Control));
                }
                if let Poll::Ready(Some(outcome)) = self.flushes.poll_next_unpin(cx) {
                    return Poll::Ready(Event::Flushed(outcome));
                }
                if let Poll::Ready(Some(())) = self.jobs.poll_next_unpin(cx) {
                    return Poll::Ready(Event::JobDone);
                }
                if let Poll::Ready(ended) = self.cleaner.poll_ended(cx) {
                    return Poll::Ready(Event::Cleaned(ended));
                }
                if accepting && let Poll::Ready(request) = incoming.poll_next_unpin(cx) {
                    return Poll::Ready(request.map_or(Event::Disconnected, Event::Request));
                }
                if Pin::new(&mut tick).poll(cx).is_ready() {
                    return Poll::Ready(Event::Tick);
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Request(request) => self.handle(request).await,
                Event::Control(ShardControl::Shutdown { reply }) => {
                    self.shutdown_reply = Some(reply);
                    self.stop();
                }
                Event::ControlClosed => orders_open = false,
                Event::Flushed(CommitStep::Written(written)) => self.on_written(written),
                Event::Flushed(CommitStep::Done(outcome)) => {
                    let partition = outcome.partition;
                    self.on_flushed(outcome);
                    self.try_cut(partition).await;
                }
                Event::JobDone => self.try_cuts().await,
                Event::Cleaned(ended) => self.on_pass_ended(ended).await,
                Event::Tick => {
                    self.housekeeping();
                    self.start_cleaning(true);
                    tick = Box::pin(Timer::new(interval));
                }
                Event::Disconnected => {
                    // Every sender is gone: nothing more can arrive, so stop (if no
                    // `Shutdown` came first) and finish what the shard holds.
                    self.disconnected = true;
                    self.stop();
                }
            }
            if self.drained() {
                break;
            }
        }
        self.close().await;
    }

    fn accepting(&self) -> bool {
        let limits = &self.config.limits;
        !self.disconnected
            && self.pending_write_bytes < limits.pending_write_bytes_max
            && self.jobs.len() < limits.reads_in_flight_max
    }

    async fn handle(&mut self, request: ShardRequest) {
        match request {
            ShardRequest::Append {
                partition,
                batch,
                leader_epoch,
                reply,
            } => {
                let source = AppendSource::Client { leader_epoch };
                self.append(partition, batch, source, reply);
            }
            ShardRequest::AppendReplica {
                partition,
                batch,
                reply,
            } => {
                self.append(partition, batch, AppendSource::Replica, reply);
            }
            ShardRequest::AppendHead {
                partition,
                batch,
                leader_epoch,
                expected_start,
                reply,
            } => {
                let head = self.append_head(partition, batch, leader_epoch, expected_start);
                let _ = reply.send(head);
            }
            ShardRequest::Truncate {
                partition,
                to,
                reply,
            } => self.truncate(partition, to, reply).await,
            ShardRequest::SetCommitted {
                partition,
                committed,
                reply,
            } => self.set_committed(partition, committed, reply),
            ShardRequest::Read {
                partition,
                from,
                bytes_max,
                limit,
                reply,
            } => self.read(partition, from, bytes_max, limit, reply),
            ShardRequest::Offsets { partition, reply } => {
                let answer = self.slot(partition).map(|slot| slot.log.offsets());
                let _ = reply.send(answer);
            }
            ShardRequest::FindTimestamp {
                partition,
                target_ms,
                reply,
            } => {
                self.find_timestamp(partition, target_ms, reply);
            }
            ShardRequest::FindMaxTimestamp { partition, reply } => {
                self.find_max_timestamp(partition, reply);
            }
            ShardRequest::WaitForData {
                partition,
                beyond,
                reply,
            } => self.data_waits.wait(partition, beyond, reply, |partition| {
                self.partitions
                    .get(&partition)
                    .map(|slot| slot.log.offsets().high_watermark)
            }),
            ShardRequest::Clean { partition, reply } => self.request_clean(partition, reply),
            ShardRequest::DeleteRecords {
                partition,
                before,
                reply,
            } => self.delete_records(partition, before, reply),
            ShardRequest::Producers { partition, reply } => {
                let answer = self.slot(partition).map(|slot| slot.log.producer_infos());
                let _ = reply.send(answer);
            }
            ShardRequest::ApplyMetadata { snapshot, reply } => {
                let answer = self.apply_metadata(snapshot).await;
                let _ = reply.send(answer);
            }
            ShardRequest::Housekeeping { reply } => {
                self.housekeeping();
                let _ = reply.send(());
            }
            ShardRequest::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            ShardRequest::Ping { reply } => {
                let _ = reply.send(self.id);
            }
        }
    }

    /// Stops the shard's front end and owned tasks, and commits everything still pending;
    /// the loop ends once that work is done.
    fn stop(&mut self) {
        // Dropping a glommio task cancels it: the front end stops making requests.
        self.tasks.clear();
        self.stopping = true;
        self.cleaner.cancel_all("the shard is shutting down");
        let ids: Vec<PartitionId> = self.partitions.keys().copied().collect();
        for partition in ids {
            self.start_flush(partition);
        }
    }

    /// Appends a batch, as a client's (offsets assigned here, in `leader_epoch`) or as a
    /// chain head's (at its own offsets; see [`PartitionLog::append_replica`]), and
    /// answers `reply` once it is durable. Returns what was stored (the batch as stored,
    /// or the duplicate's offsets) or why not; `None` when `reply` already has the answer.
    fn append(
        &mut self,
        partition: PartitionId,
        batch: crate::batch::ValidatedBatch,
        source: AppendSource,
        reply: Reply<Result<AppendOutcome, AppendError>>,
    ) -> Option<Result<Appended, AppendError>> {
        if self.stopping {
            let _ = reply.send(Err(AppendError::ShuttingDown));
            return None;
        }
        let Some(slot) = self.partitions.get_mut(&partition) else {
            let _ = reply.send(Err(self.append_missing(partition)));
            return None;
        };
        if slot.cut.is_some() {
            let partition = slot.log.label().to_string();
            let _ = reply.send(Err(AppendError::CutInProgress { partition }));
            return None;
        }
        let appended = match source {
            AppendSource::Client { leader_epoch } => slot.log.append(batch, leader_epoch, now_ms()),
            AppendSource::Head {
                leader_epoch,
                expected_start,
            } => {
                let log_end = slot.log.offsets().log_end;
                if log_end == expected_start {
                    slot.log.append(batch, leader_epoch, now_ms())
                } else {
                    Err(AppendError::NotAtLogEnd {
                        partition: slot.log.label().to_string(),
                        expected: log_end.value(),
                        got: expected_start.value(),
                    })
                }
            }
            AppendSource::Replica => slot
                .log
                .append_replica(batch, now_ms())
                .map(Appended::Stored),
        };
        match appended {
            Ok(Appended::Duplicate { base, last }) => {
                let offsets = slot.log.offsets();
                if last < slot.log.durable_end() {
                    let answer = AppendOutcome {
                        base_offset: base,
                        last_offset: last,
                        log_start: offsets.log_start,
                    };
                    let _ = reply.send(Ok(answer));
                } else {
                    slot.retries.push(AppendWaiter { reply, base, last });
                }
                Some(Ok(Appended::Duplicate { base, last }))
            }
            Ok(Appended::Stored(stored)) => {
                let (base, last) = (stored.base_offset(), stored.last_offset());
                self.pending_write_bytes += stored.len();
                slot.commit.wait(last, AppendWaiter { reply, base, last });
                let held = stored.held_len();
                let kept = matches!(source, AppendSource::Head { .. }).then(|| stored.clone());
                self.cache
                    .insert(partition, base, last, stored.into_parts(), held);
                self.start_flush(partition);
                kept.map(|batch| Ok(Appended::Stored(batch)))
            }
            Err(error) => match source {
                AppendSource::Head { .. } => Some(Err(error)),
                _ => {
                    let _ = reply.send(Err(error));
                    None
                }
            },
        }
    }

    /// A chain head's append of a client's batch at `expected_start`: what was stored (with
    /// a receiver for its durability), or why not.
    fn append_head(
        &mut self,
        partition: PartitionId,
        batch: crate::batch::ValidatedBatch,
        leader_epoch: i32,
        expected_start: Offset,
    ) -> Result<HeadAppend, AppendError> {
        let (durable, answer) = futures::channel::oneshot::channel();
        let source = AppendSource::Head {
            leader_epoch,
            expected_start,
        };
        match self.append(partition, batch, source, durable) {
            Some(Ok(Appended::Stored(batch))) => Ok(HeadAppend::Stored {
                batch,
                durable: answer,
            }),
            Some(Ok(Appended::Duplicate { base, last })) => {
                Ok(HeadAppend::Duplicate { base, last })
            }
            Some(Err(error)) => Err(error),
            None => {
                let mut answer = answer;
                match answer.try_recv() {
                    Ok(Some(Err(error))) => Err(error),
                    _ => Err(AppendError::ShuttingDown),
                }
            }
        }
    }

    /// Queues a cut of the partition's log back to `to` (see `truncation`), done as soon
    /// as every append is durable.
    async fn truncate(
        &mut self,
        partition: PartitionId,
        to: Offset,
        reply: Reply<Result<PartitionOffsets, TruncateError>>,
    ) {
        if self.stopping {
            let _ = reply.send(Err(TruncateError::ShuttingDown));
            return;
        }
        let Some(slot) = self.partitions.get_mut(&partition) else {
            let _ = reply.send(Err(TruncateError::UnknownPartition {
                partition: partition.to_string(),
            }));
            return;
        };
        if to >= slot.log.offsets().log_end {
            let _ = reply.send(Ok(slot.log.offsets()));
            return;
        }
        if slot.cut.is_some() {
            let label = slot.log.label().to_string();
            let _ = reply.send(Err(TruncateError::Busy { partition: label }));
            return;
        }
        slot.cut = Some((to, reply));
        self.cuts_waiting.insert(partition);
        self.start_flush(partition);
        self.try_cut(partition).await;
    }

    /// Runs every cut that was waiting for a job (a producer snapshot) to finish.
    async fn try_cuts(&mut self) {
        if self.cuts_waiting.is_empty() {
            return;
        }
        let waiting: Vec<PartitionId> = self.cuts_waiting.iter().copied().collect();
        for partition in waiting {
            self.try_cut(partition).await;
        }
    }

    /// Cuts the partition's log if a cut waits and every append is durable: the log is
    /// closed, cut on disk, and reopened through recovery with its committed offset.
    async fn try_cut(&mut self, partition: PartitionId) {
        let Some(slot) = self
            .partitions
            .get_mut(&partition)
            .filter(|slot| slot.cut.is_some())
        else {
            self.cuts_waiting.remove(&partition); // deleted meanwhile, or nothing waits
            return;
        };
        if slot.commit.in_flight()
            || slot.log.has_unflushed()
            || slot.snapshot_writing.get()
            || self.cleaner.is_cleaning(partition)
        {
            return;
        }
        let (to, reply) = slot.cut.take().expect("checked above");
        self.cuts_waiting.remove(&partition);
        if let Some(reason) = slot.log.poisoned() {
            let _ = reply.send(Err(TruncateError::Io {
                partition: slot.log.label().to_string(),
                detail: reason.to_string(),
            }));
            return;
        }
        if to >= slot.log.offsets().log_end {
            let _ = reply.send(Ok(slot.log.offsets()));
            return;
        }
        let mut plan = match slot.log.plan_cut(to) {
            Ok(plan) => plan,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let label = slot.log.label().to_string();
        let position = match crate::truncation::locate(&mut plan, to, &label).await {
            Ok(position) => position,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let slot = self.partitions.remove(&partition).expect("looked up above");
        self.cache.remove_partition(partition);
        let committed = slot.log.committed();
        let spec = PartitionSpec {
            id: partition,
            label: label.clone(),
            dir: slot.log.dir().to_path_buf(),
            config: slot.log.config().clone(),
            fsync: self.config.fsync,
            write_buffer_bytes: self.config.limits.write_buffer_bytes,
            clean_shutdown: false,
            now_ms: now_ms(),
        };
        drop(slot);
        if let Err(error) = crate::truncation::cut(plan, position, to, &label).await {
            tracing::error!(partition = %label, %error, "partition is offline");
            self.offline.insert(partition, (label, error.to_string()));
            let _ = reply.send(Err(error));
            return;
        }
        self.open_spec(spec).await;
        let answer = match self.partitions.get_mut(&partition) {
            Some(slot) => {
                if let Some(committed) = committed {
                    slot.log.set_committed(committed);
                }
                Ok(slot.log.offsets())
            }
            None => Err(TruncateError::Io {
                partition: label.clone(),
                detail: self
                    .offline
                    .get(&partition)
                    .map_or_else(String::new, |(_, reason)| reason.clone()),
            }),
        };
        let _ = reply.send(answer);
    }

    fn append_missing(&self, partition: PartitionId) -> AppendError {
        match self.offline.get(&partition) {
            Some((label, reason)) => AppendError::Offline {
                partition: label.clone(),
                reason: reason.clone(),
            },
            None => AppendError::UnknownPartition {
                partition: partition.to_string(),
            },
        }
    }

    /// Starts the partition's next group commit unless one is writing or the most are in
    /// flight.
    fn start_flush(&mut self, partition: PartitionId) {
        let Some(slot) = self.partitions.get_mut(&partition) else {
            return;
        };
        if !slot.commit.can_begin() {
            return;
        }
        if let Some(plan) = slot.log.take_flush() {
            let order = slot.commit.begin();
            self.flushes.push(plan.write(order).boxed_local());
        }
    }

    /// A commit's writes completed: its files are in place for the next commit, which may
    /// now start writing while this one syncs.
    fn on_written(&mut self, written: WrittenPlan) {
        let partition = written.partition();
        if let Some(slot) = self.partitions.get_mut(&partition) {
            slot.log.install_files(written.created());
            slot.commit.written();
        }
        self.flushes
            .push(written.sync().map(CommitStep::Done).boxed_local());
        self.start_flush(partition);
    }

    fn on_flushed(&mut self, mut outcome: FlushOutcome) {
        self.pending_write_bytes -= outcome.batch_bytes;
        self.commits.record(&outcome);
        let partition = outcome.partition;
        let Some(slot) = self.partitions.get_mut(&partition) else {
            return; // deleted while its commit ran
        };
        slot.log.finish_flush(&mut outcome);
        let offsets = slot.log.offsets();
        let durable_end = slot.log.durable_end();
        self.data_waits.grown(partition, offsets.high_watermark);
        for waiter in slot.commit.complete(durable_end) {
            assert!(
                waiter.last < durable_end,
                "acknowledging {} before it is durable",
                waiter.last
            );
            let answer = AppendOutcome {
                base_offset: waiter.base,
                last_offset: waiter.last,
                log_start: offsets.log_start,
            };
            let _ = waiter.reply.send(Ok(answer));
        }
        let (durable, waiting): (Vec<AppendWaiter>, Vec<AppendWaiter>) =
            std::mem::take(&mut slot.retries)
                .into_iter()
                .partition(|retry| retry.last < durable_end);
        slot.retries = waiting;
        for retry in durable {
            let answer = AppendOutcome {
                base_offset: retry.base,
                last_offset: retry.last,
                log_start: offsets.log_start,
            };
            let _ = retry.reply.send(Ok(answer));
        }
        if let Some(reason) = slot.log.poisoned() {
            let error = AppendError::Poisoned {
                partition: slot.log.label().to_string(),
                reason: reason.to_string(),
            };
            for waiter in slot.drain_waiters() {
                let _ = waiter.reply.send(Err(error.clone()));
            }
            self.cache.remove_partition(partition);
            self.pending_write_bytes -= slot.log.discard_unflushed();
        }
        self.start_deletions(partition);
        self.start_flush(partition);
    }

    fn read(
        &mut self,
        partition: PartitionId,
        from: Offset,
        bytes_max: usize,
        limit: ReadLimit,
        reply: Reply<Result<ReadOutcome, ReadError>>,
    ) {
        let bytes_max = bytes_max.min(self.config.limits.read_bytes_max);
        let slot = match self.slot(partition) {
            Ok(slot) => slot,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let offsets = slot.log.offsets();
        let end = match limit {
            ReadLimit::HighWatermark => offsets.high_watermark,
            ReadLimit::Durable => slot.log.durable_end(),
        };
        let in_range = from >= offsets.log_start && from < end;
        let mut bytes = Vec::new();
        if in_range
            && let CacheRead::Hit { .. } =
                self.cache.read(partition, from, end, bytes_max, &mut bytes)
        {
            let _ = reply.send(Ok(ReadOutcome { bytes, offsets }));
            return;
        }
        match slot.log.plan_read(from, bytes_max, end) {
            Err(error) => {
                let _ = reply.send(Err(error));
            }
            Ok(ReadStart::AtEnd) => {
                let _ = reply.send(Ok(ReadOutcome { bytes, offsets }));
            }
            Ok(ReadStart::Disk { cursor, path }) if limit == ReadLimit::Durable => {
                // Replication forwards every batch, the cleaner's empty ones too.
                let label = slot.log.label().to_string();
                self.jobs.push(
                    async move {
                        let answer = read_batches(cursor, from, end, bytes_max).await;
                        let answer = answer.map(|bytes| ReadOutcome { bytes, offsets });
                        let _ = reply.send(
                            answer.map_err(|error| ReadError::from_segment(label, path, error)),
                        );
                    }
                    .boxed_local(),
                );
            }
            Ok(ReadStart::Disk { cursor, path }) => {
                let label = slot.log.label().to_string();
                let following = slot
                    .log
                    .following_cursors(from, end, FOLLOWING_SEGMENTS_MAX);
                self.jobs.push(
                    async move {
                        let answer =
                            read_records((cursor, path), following, from, end, bytes_max).await;
                        let answer = answer.map(|bytes| ReadOutcome { bytes, offsets });
                        let _ =
                            reply.send(answer.map_err(|(path, error)| {
                                ReadError::from_segment(label, path, error)
                            }));
                    }
                    .boxed_local(),
                );
            }
        }
    }

    fn find_timestamp(
        &mut self,
        partition: PartitionId,
        target_ms: i64,
        reply: Reply<Result<Option<crate::record_timestamps::RecordAtTime>, ReadError>>,
    ) {
        let slot = match self.slot(partition) {
            Ok(slot) => slot,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let Some((cursor, path)) = slot.log.plan_timestamp_lookup(target_ms) else {
            let _ = reply.send(Ok(None));
            return;
        };
        let label = slot.log.label().to_string();
        self.jobs.push(
            async move {
                let answer = find_by_timestamp(cursor, target_ms).await;
                let _ =
                    reply.send(answer.map_err(|error| ReadError::from_segment(label, path, error)));
            }
            .boxed_local(),
        );
    }

    /// The chain's committed offset: consumers read no further.
    fn set_committed(
        &mut self,
        partition: PartitionId,
        committed: Offset,
        reply: Reply<Result<PartitionOffsets, ReadError>>,
    ) {
        let answer = self.partitions.get_mut(&partition).map(|slot| {
            let offsets = slot.log.set_committed(committed);
            self.data_waits.grown(partition, offsets.high_watermark);
            offsets
        });
        let _ = reply.send(answer.ok_or_else(|| ReadError::UnknownPartition {
            partition: partition.to_string(),
        }));
    }

    /// The first record with the partition's largest timestamp, if it holds any.
    fn find_max_timestamp(
        &mut self,
        partition: PartitionId,
        reply: Reply<Result<Option<crate::record_timestamps::RecordAtTime>, ReadError>>,
    ) {
        match self.slot(partition).map(|slot| slot.log.max_timestamp_ms()) {
            Ok(max) if max >= 0 => self.find_timestamp(partition, max, reply),
            Ok(_) => {
                let _ = reply.send(Ok(None));
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn slot(&self, partition: PartitionId) -> Result<&PartitionSlot, ReadError> {
        if self.stopping {
            return Err(ReadError::ShuttingDown);
        }
        self.partitions
            .get(&partition)
            .ok_or_else(|| match self.offline.get(&partition) {
                Some((label, reason)) => ReadError::Offline {
                    partition: label.clone(),
                    reason: reason.clone(),
                },
                None => ReadError::UnknownPartition {
                    partition: partition.to_string(),
                },
            })
    }

    /// Retention for every partition, then commits for partitions it rolled and deletion
    /// of segment files that are no longer needed.
    fn housekeeping(&mut self) {
        let now = now_ms();
        let ids: Vec<PartitionId> = self.partitions.keys().copied().collect();
        for partition in ids {
            if let Some(slot) = self.partitions.get_mut(&partition)
                && !self.cleaner.is_cleaning(partition)
            {
                slot.log.apply_retention(now);
            }
            self.start_flush(partition);
            self.start_deletions(partition);
        }
        self.snapshot_producers();
    }

    /// Saves the producer state of partitions that moved on since their last snapshot, a
    /// few per tick, so a restart after a crash replays little of the log.
    fn snapshot_producers(&mut self) {
        let mut started = 0;
        for slot in self.partitions.values_mut() {
            if started == SNAPSHOTS_PER_TICK_MAX {
                break;
            }
            if slot.log.durable_end() <= slot.snapshot_end
                || slot.log.poisoned().is_some()
                || slot.cut.is_some()
                || slot.snapshot_writing.get()
            {
                continue;
            }
            let (bytes, end) = slot.log.producer_snapshot();
            slot.snapshot_end = end;
            let dir = slot.log.dir().to_path_buf();
            let writing = slot.snapshot_writing.clone();
            writing.set(true);
            let store = crate::producer_restore::store_job(dir, bytes);
            self.jobs.push(
                async move {
                    store.await;
                    writing.set(false);
                }
                .boxed_local(),
            );
            started += 1;
        }
    }

    fn start_deletions(&mut self, partition: PartitionId) {
        let Some(slot) = self.partitions.get_mut(&partition) else {
            return;
        };
        let segments = slot.log.take_deletions();
        if segments.is_empty() {
            return;
        }
        let mut paths = Vec::with_capacity(segments.len() * 3);
        for segment in segments {
            paths.push(segment.index_path(crate::index_file::IndexKind::Offset));
            paths.push(segment.index_path(crate::index_file::IndexKind::Time));
            paths.push(segment.log_path.clone());
        }
        let label = slot.log.label().to_string();
        let dir = slot.log.dir().to_path_buf();
        self.jobs.push(
            async move {
                // The directory fsync makes the deletion, and so the new log start, durable.
                let deleted = crate::directory::remove_files(paths).await.map_err(|error| error.to_string());
                let synced = match deleted {
                    Ok(()) => crate::group_commit::sync_directory(&dir).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = synced {
                    tracing::warn!(partition = %label, %error, "could not delete expired segment files");
                }
            }
            .boxed_local(),
        );
    }

    /// Opens partitions newly placed here, closes deleted ones, and applies new settings.
    async fn apply_metadata(&mut self, snapshot: Arc<MetadataSnapshot>) -> Result<(), String> {
        let owned = snapshot.owned_by(self.id);
        let keep: ahash::AHashSet<PartitionId> = owned
            .iter()
            .map(|(topic, index)| topic.partition_id(*index))
            .collect();
        let removed: Vec<PartitionId> = self
            .partitions
            .keys()
            .chain(self.offline.keys())
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        let mut failures = Vec::new();
        for partition in removed {
            if let Err(error) = self.remove_partition(partition).await {
                failures.push(error);
            }
        }
        for (topic, index) in &owned {
            let partition = topic.partition_id(*index);
            if let Some(slot) = self.partitions.get_mut(&partition) {
                if slot.log.config() != &topic.config {
                    slot.log.set_config(topic.config.clone());
                }
            } else if !self.offline.contains_key(&partition) {
                self.open_partition(topic, *index, false).await;
                if let Some((label, reason)) = self.offline.get(&partition) {
                    failures.push(format!("{label}: {reason}"));
                }
            }
        }
        *self.metadata.borrow_mut() = snapshot;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    async fn open_partition(
        &mut self,
        topic: &TopicMeta,
        index: u32,
        clean_shutdown: bool,
    ) -> Option<RecoveryReport> {
        let spec = PartitionSpec {
            id: topic.partition_id(index),
            label: partition_label(&topic.name, index),
            dir: layout::partition_dir(&self.config.data_dir, topic, index),
            config: topic.config.clone(),
            fsync: self.config.fsync,
            write_buffer_bytes: self.config.limits.write_buffer_bytes,
            clean_shutdown,
            now_ms: now_ms(),
        };
        self.open_spec(spec).await
    }

    /// Opens (recovering) the partition `spec` describes, or records it offline.
    async fn open_spec(&mut self, spec: PartitionSpec) -> Option<RecoveryReport> {
        let (partition, label, dir) = (spec.id, spec.label.clone(), spec.dir.clone());
        let opened = match crate::directory::create(&dir).await {
            Ok(()) => match crate::clean_swap::recover(&dir).await {
                Ok(swap) => {
                    if !swap.completed.is_empty() || swap.discarded > 0 {
                        tracing::info!(partition = %label, completed = swap.completed.len(), discarded = swap.discarded, "recovery finished an interrupted cleaning pass");
                    }
                    open_partition(spec)
                        .await
                        .map_err(|error| error.to_string())
                }
                Err(reason) => Err(reason),
            },
            Err(error) => Err(format!("creating {}: {error}", dir.display())),
        };
        let opened = match opened {
            Ok((mut log, report)) => {
                log.set_marks(crate::partition_marks::PartitionMarks::load(&dir, &label).await);
                Ok((log, report))
            }
            Err(reason) => Err(reason),
        };
        let opened = match opened {
            Ok((mut log, report)) => match crate::producer_restore::restore(&mut log).await {
                Ok(snapshot_end) => Ok((log, report, snapshot_end)),
                Err(error) => Err(format!("restoring producer state: {error}")),
            },
            Err(reason) => Err(reason),
        };
        match opened {
            Ok((log, report, snapshot_end)) => {
                self.partitions
                    .insert(partition, PartitionSlot::new(log, snapshot_end));
                Some(report)
            }
            Err(reason) => {
                tracing::error!(partition = %label, %reason, "partition is offline");
                self.offline.insert(partition, (label, reason));
                None
            }
        }
    }

    /// Forgets a deleted partition and moves its directory to the trash for removal.
    async fn remove_partition(&mut self, partition: PartitionId) -> Result<(), String> {
        self.offline.remove(&partition);
        self.cleaner.cancel(partition, "the partition was deleted");
        let Some(mut slot) = self.partitions.remove(&partition) else {
            return Ok(());
        };
        let error = AppendError::UnknownPartition {
            partition: slot.log.label().to_string(),
        };
        for waiter in slot.drain_waiters() {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        self.cache.remove_partition(partition);
        self.data_waits.remove_partition(partition);
        self.pending_write_bytes -= slot.log.discard_unflushed();
        let dir = slot.log.dir().to_path_buf();
        let trash = layout::trash_dir_for(&self.config.data_dir, &dir);
        crate::directory::rename(&dir, &trash)
            .await
            .map_err(|error| format!("moving {} to the trash: {error}", dir.display()))?;
        tracing::info!(partition = %slot.log.label(), "partition deleted");
        self.jobs.push(remove_tree_job(trash));
        Ok(())
    }

    fn stats(&self) -> ShardStats {
        ShardStats {
            partitions: self.partitions.len(),
            offline_partitions: self.offline.len(),
            cache_bytes: self.cache.bytes(),
            cache_batches: self.cache.len(),
            pending_write_bytes: self.pending_write_bytes,
            flushes_in_flight: self.flushes.len(),
            jobs_in_flight: self.jobs.len(),
            data_waits: self.data_waits.len(),
            queue_depth: 0,
            commits: self.commits,
            cleaner: self.cleaner.totals().0,
            cleaner_failures: self.cleaner.totals().1,
            partition_bytes: self
                .partitions
                .values()
                .map(|slot| (slot.log.label().to_string(), slot.log.size_bytes()))
                .collect(),
        }
    }

    fn drained(&self) -> bool {
        self.stopping
            && self.flushes.is_empty()
            && self.jobs.is_empty()
            && self
                .partitions
                .values()
                .all(|slot| !slot.log.has_unflushed() || slot.log.poisoned().is_some())
    }

    /// Seals every partition's active segment so the next start needs no scan, then
    /// answers the shutdown request.
    async fn close(mut self) {
        let mut report = ShutdownReport::default();
        let mut closes = Vec::new();
        for slot in self.partitions.values_mut() {
            if let Some(reason) = slot.log.poisoned() {
                report
                    .failures
                    .push((slot.log.label().to_string(), reason.to_string()));
            } else if let Some(plan) = slot.log.take_close() {
                closes.push((slot.log.label().to_string(), plan.execute()));
            }
        }
        let snapshots: Vec<_> = self
            .partitions
            .values()
            .filter(|slot| slot.log.poisoned().is_none())
            .map(|slot| {
                let (bytes, _) = slot.log.producer_snapshot();
                crate::producer_restore::store_job(slot.log.dir().to_path_buf(), bytes)
            })
            .collect();
        let (labels, plans): (Vec<String>, Vec<_>) = closes.into_iter().unzip();
        for (label, outcome) in labels
            .into_iter()
            .zip(futures::future::join_all(plans).await)
        {
            if let Err(reason) = outcome.result {
                report.failures.push((label, reason));
            }
        }
        futures::future::join_all(snapshots).await;
        report.partitions_closed = self.partitions.len() - report.failures.len();
        for (label, reason) in self.offline.values() {
            report.failures.push((label.clone(), reason.clone()));
        }
        if let Some(reply) = self.shutdown_reply.take() {
            let _ = reply.send(report);
        }
    }
}

fn remove_tree_job(dir: PathBuf) -> LocalBoxFuture<'static, ()> {
    async move {
        if let Err(error) = crate::directory::remove_tree(&dir).await {
            tracing::warn!(dir = %dir.display(), %error, "could not remove a deleted partition's files");
        }
    }
    .boxed_local()
}

/// Wall-clock milliseconds since the Unix epoch (segment ages, retention).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|since| i64::try_from(since.as_millis()).ok())
        .unwrap_or(0)
}
