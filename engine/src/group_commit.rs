//! Group commit: one fdatasync covers every append that arrived while the previous one ran.
//!
//! A commit ([`FlushPlan`]) runs in two steps: its writes, then its fdatasyncs. Each
//! partition has at most one commit writing and at most two in flight: the next commit
//! takes everything appended since and starts writing as soon as the previous one's writes
//! have completed, while that one's fdatasync still runs. (Writes may not overlap sooner:
//! a take's first write rewrites the previous take's last block, see `log_writer`.) So at
//! low load an append waits for one write and one fdatasync, and at high load many appends
//! share both while the disk is kept busy. A plan owns everything it touches (file handles,
//! buffers, index bytes), so it runs as plain futures beside the shard loop while the loop
//! keeps sole ownership of the partition's state.
//!
//! Outcomes are delivered in the order the commits began: a commit whose fdatasync ends
//! first waits for its predecessor's outcome ([`CommitOrder`]), so the durable end only
//! moves forward and a failed commit is seen before any later success.
//!
//! An append's waiter is answered only after the plan holding its bytes has written them,
//! created and fsynced any new file and its directory entry, and fdatasync'd every file it
//! wrote (Durable by default, DESIGN.md "Storage engine").

use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use glommio::io::{Directory, DmaFile, OpenOptions};

use crate::config::FsyncPolicy;
use crate::ids::PartitionId;
use crate::log_writer::{PendingWrite, align_up};
use crate::offset::Offset;

/// Where a segment's bytes go.
#[derive(Debug)]
pub enum FileTarget {
    Open(Rc<DmaFile>),
    /// The segment's first commit creates its file.
    Create(PathBuf),
}

/// The index files of a sealed segment and the length its log is cut to.
#[derive(Debug)]
pub struct Seal {
    pub log_len: u64,
    pub offset_index: (PathBuf, Vec<u8>),
    pub time_index: (PathBuf, Vec<u8>),
}

/// The work of one commit on one segment, in order: writes, then the seal.
#[derive(Debug)]
pub struct SegmentFlush {
    pub base: Offset,
    pub target: FileTarget,
    pub writes: Vec<PendingWrite>,
    pub seal: Option<Seal>,
    /// The segment's durable length once the plan completes.
    pub durable_len: u64,
}

/// One group commit of one partition.
#[derive(Debug)]
pub struct FlushPlan {
    pub partition: PartitionId,
    pub dir: PathBuf,
    pub segments: Vec<SegmentFlush>,
    pub fsync: FsyncPolicy,
    /// Offsets below this are durable when the plan succeeds.
    pub durable_end: Offset,
    /// Bytes of batches the plan commits (for the shard's pending-bytes bound).
    pub batch_bytes: usize,
    pub batch_count: u64,
}

/// What a completed plan did.
#[derive(Debug)]
pub struct FlushOutcome {
    pub partition: PartitionId,
    pub durable_end: Offset,
    pub batch_bytes: usize,
    pub batch_count: u64,
    pub result: Result<FlushDone, String>,
}

/// The effects the partition applies after a successful plan.
#[derive(Debug, Default)]
pub struct FlushDone {
    pub created: Vec<(Offset, Rc<DmaFile>)>,
    pub durable_lens: Vec<(Offset, u64)>,
    pub sealed: Vec<Offset>,
    /// Time spent creating files and writing, and then making it durable.
    pub write_time: Duration,
    pub sync_time: Duration,
}

/// What a shard's group commits did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitProbe {
    pub commits: u64,
    pub batches: u64,
    pub bytes: u64,
    pub write_time: Duration,
    pub sync_time: Duration,
}

impl CommitProbe {
    /// Counts a finished commit.
    pub fn record(&mut self, outcome: &FlushOutcome) {
        if let Ok(done) = &outcome.result {
            self.commits += 1;
            self.batches += outcome.batch_count;
            self.bytes += u64::try_from(outcome.batch_bytes).unwrap_or(u64::MAX);
            self.write_time += done.write_time;
            self.sync_time += done.sync_time;
        }
    }
}

/// A step of a commit, as the shard loop receives it.
#[derive(Debug)]
pub enum CommitStep {
    /// The writes completed; the fdatasyncs are next. The next commit may start writing.
    Written(WrittenPlan),
    /// The commit is over, successful or not.
    Done(FlushOutcome),
}

/// Where a commit stands among its partition's: it delivers its outcome only after the
/// previous commit's, then lets the next one deliver.
#[derive(Debug)]
pub struct CommitOrder {
    previous: Option<oneshot::Receiver<()>>,
    delivered: oneshot::Sender<()>,
}

impl CommitOrder {
    /// The order of a commit that is the only one in flight, with no successor.
    fn alone() -> CommitOrder {
        CommitOrder {
            previous: None,
            delivered: oneshot::channel().0,
        }
    }

    async fn wait_for_previous(&mut self) {
        if let Some(previous) = self.previous.take() {
            // A dropped sender means the previous commit's future is gone: nothing to wait for.
            let _ = previous.await;
        }
    }

    fn deliver(self) {
        let _ = self.delivered.send(());
    }
}

/// A commit whose writes completed, with its fdatasyncs to run.
#[derive(Debug)]
pub struct WrittenPlan {
    facts: CommitFacts,
    dir: PathBuf,
    fsync: FsyncPolicy,
    touched: Vec<Rc<DmaFile>>,
    done: FlushDone,
    order: CommitOrder,
}

/// What a commit covers, carried from its plan to its outcome.
#[derive(Debug)]
struct CommitFacts {
    partition: PartitionId,
    durable_end: Offset,
    batch_bytes: usize,
    batch_count: u64,
}

impl CommitFacts {
    fn outcome(self, result: Result<FlushDone, String>) -> FlushOutcome {
        FlushOutcome {
            partition: self.partition,
            durable_end: self.durable_end,
            batch_bytes: self.batch_bytes,
            batch_count: self.batch_count,
            result,
        }
    }
}

impl FlushPlan {
    /// Runs the plan whole, when it is the only one in flight (closing a partition):
    /// writes, seals, new directory entries, then fdatasync of every file.
    pub async fn execute(self) -> FlushOutcome {
        let order = CommitOrder::alone();
        match self.write(order).await {
            CommitStep::Written(written) => written.sync().await,
            CommitStep::Done(outcome) => outcome,
        }
    }

    /// Runs the plan's first step: creates files, writes, and seals. Gives a
    /// [`CommitStep::Written`] to sync, or the failed outcome.
    pub async fn write(self, mut order: CommitOrder) -> CommitStep {
        let FlushPlan {
            partition,
            dir,
            segments,
            fsync,
            durable_end,
            batch_bytes,
            batch_count,
        } = self;
        let facts = CommitFacts {
            partition,
            durable_end,
            batch_bytes,
            batch_count,
        };
        match write_segments(segments, fsync).await {
            Ok((done, touched)) => CommitStep::Written(WrittenPlan {
                facts,
                dir,
                fsync,
                touched,
                done,
                order,
            }),
            Err(reason) => {
                order.wait_for_previous().await;
                order.deliver();
                CommitStep::Done(facts.outcome(Err(reason)))
            }
        }
    }
}

impl WrittenPlan {
    pub fn partition(&self) -> PartitionId {
        self.facts.partition
    }

    /// Files this commit created, by segment base: written, their entries not yet durable.
    pub fn created(&self) -> &[(Offset, Rc<DmaFile>)] {
        &self.done.created
    }

    /// Runs the second step: the directory's fsync if files were created, then fdatasync of
    /// every file written; the outcome waits for the previous commit's.
    pub async fn sync(self) -> FlushOutcome {
        let WrittenPlan {
            facts,
            dir,
            fsync,
            touched,
            mut done,
            mut order,
        } = self;
        let synced = sync_files(&dir, &touched, fsync, &mut done).await;
        order.wait_for_previous().await;
        order.deliver();
        facts.outcome(synced.map(|()| done))
    }
}

async fn write_segments(
    segments: Vec<SegmentFlush>,
    fsync: FsyncPolicy,
) -> Result<(FlushDone, Vec<Rc<DmaFile>>), String> {
    let mut done = FlushDone::default();
    let started = Instant::now();
    let mut touched = Vec::with_capacity(segments.len());
    for segment in segments {
        let file = match segment.target {
            FileTarget::Open(file) => file,
            FileTarget::Create(path) => {
                let file = Rc::new(create_file(&path).await?);
                done.created.push((segment.base, file.clone()));
                file
            }
        };
        // A take's writes never overlap (see `log_writer`), so they go out together.
        let writes = segment
            .writes
            .into_iter()
            .map(|write| write_all(&file, write));
        for result in futures::future::join_all(writes).await {
            result?;
        }
        if let Some(seal) = segment.seal {
            file.truncate(seal.log_len)
                .await
                .map_err(|error| describe("truncating", &file, error))?;
            // The log must be durable before an index that vouches for it: recovery trusts
            // a sealed segment whose index matches its size and does not scan it.
            if fsync == FsyncPolicy::EveryCommit {
                file.fdatasync()
                    .await
                    .map_err(|error| describe("fdatasync of", &file, error))?;
            }
            write_index_file(&seal.offset_index.0, &seal.offset_index.1, fsync).await?;
            write_index_file(&seal.time_index.0, &seal.time_index.1, fsync).await?;
            done.sealed.push(segment.base);
        }
        done.durable_lens.push((segment.base, segment.durable_len));
        touched.push(file);
    }
    done.write_time = started.elapsed();
    Ok((done, touched))
}

async fn sync_files(
    dir: &std::path::Path,
    touched: &[Rc<DmaFile>],
    fsync: FsyncPolicy,
    done: &mut FlushDone,
) -> Result<(), String> {
    let started = Instant::now();
    if fsync == FsyncPolicy::EveryCommit {
        if !done.created.is_empty() {
            sync_directory(dir).await?;
        }
        let syncs = touched.iter().map(|file| file.fdatasync());
        for (file, result) in touched.iter().zip(futures::future::join_all(syncs).await) {
            result.map_err(|error| describe("fdatasync of", file, error))?;
        }
    }
    done.sync_time = started.elapsed();
    Ok(())
}

async fn create_file(path: &std::path::Path) -> Result<DmaFile, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await
        .map_err(|error| format!("creating {}: {error}", path.display()))
}

async fn write_all(file: &DmaFile, write: PendingWrite) -> Result<(), String> {
    let len = write.buffer.len();
    let position = write.position;
    let written = file
        .write_at(write.buffer, position)
        .await
        .map_err(|error| describe("writing", file, error))?;
    if written != len {
        return Err(format!(
            "short write to {}: {written} of {len} bytes at {position} (disk full?)",
            path_of(file)
        ));
    }
    Ok(())
}

/// Writes a small file whole (index files): create, one aligned write, fdatasync.
pub async fn write_index_file(
    path: &std::path::Path,
    bytes: &[u8],
    fsync: FsyncPolicy,
) -> Result<(), String> {
    let file = create_file(path).await?;
    let mut buffer = file.alloc_dma_buffer(align_up(bytes.len().max(1)));
    buffer.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
    buffer.as_bytes_mut()[bytes.len()..].fill(0);
    write_all(
        &file,
        PendingWrite {
            buffer,
            position: 0,
            log_len_after: 0,
        },
    )
    .await?;
    if fsync == FsyncPolicy::EveryCommit {
        file.fdatasync()
            .await
            .map_err(|error| describe("fdatasync of", &file, error))?;
    }
    file.close()
        .await
        .map_err(|error| format!("closing {}: {error}", path.display()))
}

/// fsyncs a directory, so the entries of files created in it survive a crash.
pub async fn sync_directory(dir: &std::path::Path) -> Result<(), String> {
    let directory = Directory::open(dir)
        .await
        .map_err(|error| format!("opening {}: {error}", dir.display()))?;
    directory
        .sync()
        .await
        .map_err(|error| format!("fsync of directory {}: {error}", dir.display()))?;
    directory
        .close()
        .await
        .map_err(|error| format!("closing {}: {error}", dir.display()))
}

fn describe(action: &str, file: &DmaFile, error: glommio::GlommioError<()>) -> String {
    format!("{action} {}: {error}", path_of(file))
}

fn path_of(file: &DmaFile) -> String {
    file.path().map_or_else(
        || "<unnamed file>".to_string(),
        |path| path.display().to_string(),
    )
}

/// The most commits of one partition in flight: one syncing while the next writes.
pub const COMMITS_IN_FLIGHT_MAX: usize = 2;

/// One partition's commits in flight and the appends waiting for them, oldest first.
#[derive(Debug)]
pub struct GroupCommit<W> {
    /// Commits begun and not yet complete.
    in_flight: usize,
    /// True while the newest commit's writes run.
    writing: bool,
    /// Fires once the newest commit's outcome is delivered.
    last_delivered: Option<oneshot::Receiver<()>>,
    waiters: VecDeque<(Offset, W)>,
}

impl<W> Default for GroupCommit<W> {
    fn default() -> Self {
        GroupCommit {
            in_flight: 0,
            writing: false,
            last_delivered: None,
            waiters: VecDeque::new(),
        }
    }
}

impl<W> GroupCommit<W> {
    /// Registers `waiter` for the append whose last offset is `last`.
    ///
    /// # Panics
    /// When `last` is before an earlier waiter's: appends are assigned offsets in order.
    pub fn wait(&mut self, last: Offset, waiter: W) {
        if let Some((previous, _)) = self.waiters.back() {
            assert!(
                last > *previous,
                "waiters must be registered in offset order: {previous} then {last}"
            );
        }
        self.waiters.push_back((last, waiter));
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight > 0
    }

    /// True when a commit may begin: none is writing and fewer than the most are in flight.
    pub fn can_begin(&self) -> bool {
        !self.writing && self.in_flight < COMMITS_IN_FLIGHT_MAX
    }

    /// Marks a commit as begun (writing) and gives its place in the delivery order.
    ///
    /// # Panics
    /// When one is writing (two commits could write the same block at once) or the most
    /// are in flight.
    pub fn begin(&mut self) -> CommitOrder {
        assert!(!self.writing, "one group commit writing per partition");
        assert!(
            self.in_flight < COMMITS_IN_FLIGHT_MAX,
            "at most {COMMITS_IN_FLIGHT_MAX} group commits in flight per partition"
        );
        self.in_flight += 1;
        self.writing = true;
        let (delivered, next) = oneshot::channel();
        CommitOrder {
            previous: self.last_delivered.replace(next),
            delivered,
        }
    }

    /// Marks the newest commit's writes as complete: the next may begin.
    pub fn written(&mut self) {
        assert!(self.writing, "no group commit is writing");
        self.writing = false;
    }

    /// Marks the oldest commit as done and returns every waiter whose append is below
    /// `durable_end`.
    pub fn complete(&mut self, durable_end: Offset) -> Vec<W> {
        assert!(
            self.in_flight > 0,
            "completing a group commit that was not started"
        );
        self.in_flight -= 1;
        if self.in_flight == 0 {
            // Only the newest commit can fail while writing; it is then the only one.
            self.writing = false;
        }
        let ready = self
            .waiters
            .partition_point(|(last, _)| *last < durable_end);
        self.waiters
            .drain(..ready)
            .map(|(_, waiter)| waiter)
            .collect()
    }

    /// Takes every waiter (the partition failed or went away).
    pub fn drain(&mut self) -> Vec<W> {
        self.waiters.drain(..).map(|(_, waiter)| waiter).collect()
    }

    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn offset(value: i64) -> Offset {
        Offset::new(value).unwrap()
    }

    #[test]
    fn a_directory_given_by_a_relative_path_syncs() {
        // glommio 0.9.0 opened directories with dirfd -1, so relative paths failed with EBADF
        // and partitions created under a relative --data-dir refused writes.
        let synced = glommio::LocalExecutorBuilder::default()
            .spawn(|| async { sync_directory(std::path::Path::new(".")).await })
            .expect("an executor")
            .join()
            .expect("the executor ran");
        assert_eq!(synced, Ok(()));
    }

    #[test]
    fn completion_answers_exactly_the_appends_below_the_durable_end() {
        let mut commit = GroupCommit::default();
        commit.wait(offset(4), "a");
        commit.wait(offset(9), "b");
        let _order = commit.begin();
        commit.wait(offset(12), "c");
        commit.written();
        assert_eq!(commit.complete(offset(10)), vec!["a", "b"]);
        assert!(!commit.in_flight());
        assert_eq!(commit.waiting(), 1);
        let _order = commit.begin();
        commit.written();
        assert_eq!(commit.complete(offset(13)), vec!["c"]);
    }

    #[test]
    fn the_next_commit_begins_once_the_previous_has_written() {
        let mut commit = GroupCommit::<()>::default();
        let _first = commit.begin();
        assert!(!commit.can_begin(), "the first is still writing");
        commit.written();
        assert!(
            commit.can_begin(),
            "the first is syncing: the next may write"
        );
        let _second = commit.begin();
        commit.written();
        assert!(!commit.can_begin(), "two are in flight");
        assert!(commit.complete(offset(1)).is_empty());
        assert!(commit.can_begin());
        assert!(commit.in_flight());
        assert!(commit.complete(offset(2)).is_empty());
        assert!(!commit.in_flight());
    }

    #[test]
    fn a_commit_delivers_only_after_the_one_before_it() {
        let mut commit = GroupCommit::<()>::default();
        let first = commit.begin();
        commit.written();
        let mut second = commit.begin();
        let mut waiting = Box::pin(async move {
            second.wait_for_previous().await;
            second
        });
        assert!(waiting.as_mut().now_or_never().is_none());
        first.deliver();
        assert!(waiting.as_mut().now_or_never().is_some());
    }

    #[test]
    fn a_failed_write_leaves_no_commit_writing() {
        let mut commit = GroupCommit::<()>::default();
        let _order = commit.begin();
        assert!(commit.complete(offset(1)).is_empty());
        assert!(commit.can_begin());
    }

    #[test]
    #[should_panic(expected = "one group commit writing")]
    fn two_plans_writing_is_a_bug() {
        let mut commit = GroupCommit::<()>::default();
        let _first = commit.begin();
        let _second = commit.begin();
    }

    #[test]
    #[should_panic(expected = "at most 2 group commits in flight")]
    fn three_plans_in_flight_is_a_bug() {
        let mut commit = GroupCommit::<()>::default();
        for _ in 0..3 {
            let _order = commit.begin();
            commit.written();
        }
    }
}
