//! Group commit: one fdatasync covers every append that arrived while the previous one ran.
//!
//! Each partition has at most one [`FlushPlan`] in flight. Appends that arrive meanwhile
//! only fill DMA buffers; when the plan completes, the shard takes everything appended
//! since into the next plan. So at low load an append waits for one write and one
//! fdatasync, and at high load many appends share both. A plan owns everything it touches
//! (file handles, buffers, index bytes), so it runs as a plain future beside the shard loop
//! while the loop keeps sole ownership of the partition's state.
//!
//! An append's waiter is answered only after the plan holding its bytes has written them,
//! created and fsynced any new file and its directory entry, and fdatasync'd every file it
//! wrote (Durable by default, DESIGN.md "Storage engine").

use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    pub writes: usize,
}

/// What a shard's group commits did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitProbe {
    pub commits: u64,
    pub batches: u64,
    pub bytes: u64,
    pub writes: u64,
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
            self.writes += u64::try_from(done.writes).unwrap_or(u64::MAX);
            self.write_time += done.write_time;
            self.sync_time += done.sync_time;
        }
    }
}

impl FlushPlan {
    /// Runs the plan: writes, seals, new directory entries, then fdatasync of every file.
    pub async fn execute(self) -> FlushOutcome {
        let FlushPlan {
            partition,
            dir,
            segments,
            fsync,
            durable_end,
            batch_bytes,
            batch_count,
        } = self;
        let result = run(dir, segments, fsync).await;
        FlushOutcome {
            partition,
            durable_end,
            batch_bytes,
            batch_count,
            result,
        }
    }
}

async fn run(
    dir: PathBuf,
    segments: Vec<SegmentFlush>,
    fsync: FsyncPolicy,
) -> Result<FlushDone, String> {
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
        done.writes += segment.writes.len();
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
    let sync_started = Instant::now();
    if fsync == FsyncPolicy::EveryCommit {
        if !done.created.is_empty() {
            sync_directory(&dir).await?;
        }
        let syncs = touched.iter().map(|file| file.fdatasync());
        for (file, result) in touched.iter().zip(futures::future::join_all(syncs).await) {
            result.map_err(|error| describe("fdatasync of", file, error))?;
        }
    }
    done.sync_time = sync_started.elapsed();
    Ok(done)
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

/// The appends of one partition waiting for their commit, oldest first.
#[derive(Debug)]
pub struct GroupCommit<W> {
    in_flight: bool,
    waiters: VecDeque<(Offset, W)>,
}

impl<W> Default for GroupCommit<W> {
    fn default() -> Self {
        GroupCommit {
            in_flight: false,
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
        self.in_flight
    }

    /// Marks a plan as started.
    ///
    /// # Panics
    /// When one is already in flight: two plans could write the same block at once.
    pub fn begin(&mut self) {
        assert!(!self.in_flight, "one group commit in flight per partition");
        self.in_flight = true;
    }

    /// Marks the plan as done and returns every waiter whose append is below `durable_end`.
    pub fn complete(&mut self, durable_end: Offset) -> Vec<W> {
        assert!(
            self.in_flight,
            "completing a group commit that was not started"
        );
        self.in_flight = false;
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
        commit.begin();
        commit.wait(offset(12), "c");
        assert_eq!(commit.complete(offset(10)), vec!["a", "b"]);
        assert!(!commit.in_flight());
        assert_eq!(commit.waiting(), 1);
        commit.begin();
        assert_eq!(commit.complete(offset(13)), vec!["c"]);
    }

    #[test]
    #[should_panic(expected = "one group commit in flight")]
    fn two_plans_in_flight_is_a_bug() {
        let mut commit = GroupCommit::<()>::default();
        commit.begin();
        commit.begin();
    }
}
