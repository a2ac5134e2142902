//! Starting and stopping the shards: one glommio executor per shard, pinned to a CPU,
//! each opening (recovering) its partitions before it serves, then running its loop beside
//! the caller's front end (the Kafka listener, a test, a benchmark).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::EngineConfig;
use crate::ids::ShardId;
use crate::layout;
use crate::metadata::MetadataSnapshot;
use crate::metadata_service::{MetadataRequest, MetadataService};
use crate::metadata_store;
use crate::recovery::RecoveryReport;
use crate::request::{ShardControl, ShardRequest, ShutdownReport};
use crate::router::Router;
use crate::shard::Shard;

/// Admin requests waiting for the metadata service.
const METADATA_QUEUE_DEPTH_MAX: usize = 64;

/// The shard loop's CPU shares; glommio's default queue has 1000.
const SHARD_LOOP_SHARES: usize = 10_000;

/// How long one task queue runs before glommio polls I/O and picks the next queue. I/O is
/// submitted and completed only between queue runs, so this bounds how long front-end work
/// can hold back a commit's writes (glommio's default is 100 ms).
const PREEMPT_TIMER: std::time::Duration = std::time::Duration::from_micros(250);

/// Running shards.
#[derive(Debug)]
pub struct ShardSet {
    senders: Vec<flume::Sender<ShardRequest>>,
    controls: Vec<flume::Sender<ShardControl>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    config: EngineConfig,
    recovery: Vec<RecoveryReport>,
    /// `<data-dir>/.lock`, locked for as long as the shards run (see [`lock_data_dir`]).
    _lock: std::fs::File,
}

/// Why the shards could not start or stop.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid engine configuration: {0}")]
    Config(String),
    #[error("data directory {path}: {detail}")]
    DataDir {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error(
        "data directory {path} is in use by another process (another broker?): {LOCK_FILE} is locked"
    )]
    DataDirInUse { path: std::path::PathBuf },
    #[error(transparent)]
    Metadata(#[from] metadata_store::MetadataError),
    #[error("could not start shard {shard}: {detail}")]
    Executor { shard: usize, detail: String },
    #[error("shard {shard} stopped unexpectedly: {detail}")]
    ShardFailed { shard: usize, detail: String },
}

/// How the shards stopped.
#[derive(Debug, Default)]
pub struct ShutdownSummary {
    pub shards: Vec<ShutdownReport>,
    /// True when every partition closed cleanly, so the next start trusts saved indexes.
    pub clean: bool,
}

/// The file in the data directory a running broker holds an exclusive lock on.
pub const LOCK_FILE: &str = ".lock";

/// Takes the data directory's lock, as Kafka does with its log directories: two brokers
/// writing the same segment files would destroy them. The lock is an `flock`, so it goes
/// with the process, however it ends.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, EngineError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| EngineError::DataDir {
            path: path.clone(),
            detail: error.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(EngineError::DataDirInUse {
            path: data_dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(error)) => Err(EngineError::DataDir {
            path,
            detail: format!("locking: {error}"),
        }),
    }
}

/// What a shard thread tells the starting thread.
enum StartStatus {
    Ready(Vec<RecoveryReport>),
    Failed {
        shard: usize,
        detail: String,
    },
    /// The thread ended (normally or by a panic) before saying it was ready.
    Exited,
}

/// Sends [`StartStatus::Exited`] when the shard thread ends, even by a panic, so a shard
/// that dies while starting never leaves the starter waiting.
struct ExitNotice(flume::Sender<StartStatus>);

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.0.send(StartStatus::Exited);
    }
}

impl ShardSet {
    /// Starts `config.shard_count` shards and, on each, the future `front_end` makes from
    /// that shard's [`Router`]. Returns once every shard has recovered its partitions.
    pub fn start<F, Fut>(config: EngineConfig, front_end: F) -> Result<ShardSet, EngineError>
    where
        F: Fn(Router) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        config.validate().map_err(EngineError::Config)?;
        let data_dir = config.data_dir.clone();
        let data_dir_error = |error: std::io::Error| EngineError::DataDir {
            path: data_dir.clone(),
            detail: error.to_string(),
        };
        std::fs::create_dir_all(&data_dir).map_err(data_dir_error)?;
        let lock = lock_data_dir(&data_dir)?;
        let snapshot = place_on_shards(
            metadata_store::load(&data_dir, &config.topic_defaults)?,
            config.shard_count,
        );
        metadata_store::store(&data_dir, &snapshot)?;
        let clean = layout::prepare(&data_dir, &snapshot).map_err(data_dir_error)?;
        let snapshot = Arc::new(snapshot);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.shard_count)
            .map(|_| flume::bounded(config.limits.shard_queue_depth_max))
            .unzip();
        let (controls, control_receivers): (Vec<_>, Vec<_>) =
            (0..config.shard_count).map(|_| flume::bounded(1)).unzip();
        let (metadata_tx, metadata_rx) = flume::bounded(METADATA_QUEUE_DEPTH_MAX);
        let (status_tx, status_rx) = flume::unbounded();
        let front_end = Arc::new(front_end);
        let mut set = ShardSet {
            senders,
            controls,
            threads: Vec::new(),
            config: config.clone(),
            recovery: Vec::new(),
            _lock: lock,
        };
        let shards = receivers.into_iter().zip(control_receivers);
        for (index, (requests, control)) in shards.enumerate() {
            let context = ShardContext {
                id: ShardId::new(u16::try_from(index).expect("validated shard count")),
                config: config.clone(),
                snapshot: snapshot.clone(),
                clean,
                senders: set.senders.clone(),
                requests,
                control,
                metadata_tx: metadata_tx.clone(),
                metadata_rx: (index == 0).then(|| metadata_rx.clone()),
                status: status_tx.clone(),
            };
            let front_end = front_end.clone();
            let builder = builder(&config, index);
            let thread = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || run_shard_thread(builder, context, move |router| front_end(router)));
            match thread {
                Ok(thread) => set.threads.push(thread),
                Err(error) => {
                    return Err(set.fail_start(EngineError::Executor {
                        shard: index,
                        detail: error.to_string(),
                    }));
                }
            }
        }
        drop(status_tx);
        let mut ready = 0;
        while ready < set.threads.len() {
            match status_rx.recv() {
                Ok(StartStatus::Ready(reports)) => {
                    set.recovery.extend(reports);
                    ready += 1;
                }
                Ok(StartStatus::Failed { shard, detail }) => {
                    return Err(set.fail_start(EngineError::Executor { shard, detail }));
                }
                Ok(StartStatus::Exited) | Err(_) => {
                    let error = EngineError::ShardFailed {
                        shard: 0,
                        detail: "a shard exited while starting".into(),
                    };
                    return Err(set.fail_start(error));
                }
            }
        }
        Ok(set)
    }

    /// What recovery found when the shards opened their partitions.
    pub fn recovery_reports(&self) -> &[RecoveryReport] {
        &self.recovery
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// True while every shard thread runs. A shard only ends early by a broken invariant
    /// (a panic), after which the broker must stop.
    pub fn all_running(&self) -> bool {
        self.threads.iter().all(|thread| !thread.is_finished())
    }

    /// Stops every shard: front ends are cancelled, appends already taken are committed and
    /// answered, active segments are sealed. Blocks until the shard threads have exited.
    pub fn shutdown(self) -> Result<ShutdownSummary, EngineError> {
        let mut answers = Vec::with_capacity(self.controls.len());
        for control in &self.controls {
            let (reply, answer) = flume::bounded(1);
            let _ = control.send(ShardControl::Shutdown { reply });
            answers.push(answer);
        }
        drop(self.senders);
        let mut summary = ShutdownSummary {
            shards: Vec::new(),
            clean: true,
        };
        let mut failure = None;
        for (shard, (thread, answer)) in self.threads.into_iter().zip(answers).enumerate() {
            // Joining, not waiting for the answer: a shard that died cannot answer.
            if let Err(panic) = thread.join() {
                failure.get_or_insert(EngineError::ShardFailed {
                    shard,
                    detail: panic_message(&panic),
                });
            }
            match answer.try_recv() {
                Ok(report) => {
                    summary.clean &= report.failures.is_empty();
                    summary.shards.push(report);
                }
                Err(_) => summary.clean = false,
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
        if summary.clean {
            let data_dir = &self.config.data_dir;
            layout::mark_clean_shutdown(data_dir).map_err(|error| EngineError::DataDir {
                path: data_dir.clone(),
                detail: error.to_string(),
            })?;
        }
        Ok(summary)
    }

    /// A shard failed to start: stop the others and return `error`.
    fn fail_start(self, error: EngineError) -> EngineError {
        for control in &self.controls {
            let (reply, _) = flume::bounded(1);
            let _ = control.send(ShardControl::Shutdown { reply });
        }
        drop(self.senders);
        for thread in self.threads {
            let _ = thread.join();
        }
        error
    }
}

/// The body of a shard thread: build the executor here (glommio binds it to this thread
/// and CPU) and run the shard on it.
fn run_shard_thread<Fut: Future<Output = ()> + 'static>(
    builder: LocalExecutorBuilder,
    context: ShardContext,
    front_end: impl FnOnce(Router) -> Fut,
) {
    let notice = ExitNotice(context.status.clone());
    match builder.make() {
        Ok(executor) => executor.run(context.run(front_end)),
        Err(error) => {
            let shard = context.id.index();
            let _ = notice.0.send(StartStatus::Failed {
                shard,
                detail: memlock_hint(&error.to_string()),
            });
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

/// Everything a shard's executor thread needs; moved into it.
struct ShardContext {
    id: ShardId,
    config: EngineConfig,
    snapshot: Arc<MetadataSnapshot>,
    clean: bool,
    senders: Vec<flume::Sender<ShardRequest>>,
    requests: flume::Receiver<ShardRequest>,
    control: flume::Receiver<ShardControl>,
    metadata_tx: flume::Sender<MetadataRequest>,
    metadata_rx: Option<flume::Receiver<MetadataRequest>>,
    status: flume::Sender<StartStatus>,
}

impl ShardContext {
    async fn run<Fut: Future<Output = ()> + 'static>(self, front_end: impl FnOnce(Router) -> Fut) {
        if let Err(error) =
            crate::iopoll_probe::settle(&self.config.data_dir, self.id.index()).await
        {
            let detail = format!(
                "cannot open files in {}: {error}",
                self.config.data_dir.display()
            );
            let _ = self.status.send(StartStatus::Failed {
                shard: self.id.index(),
                detail,
            });
            return;
        }
        let config = Rc::new(self.config);
        let metadata = Rc::new(RefCell::new(self.snapshot.clone()));
        let (mut shard, reports) =
            Shard::open(self.id, config.clone(), metadata.clone(), self.clean).await;
        if let Some(requests) = self.metadata_rx {
            let service = MetadataService::new(config, self.snapshot, self.senders.clone());
            shard.own_task(glommio::spawn_local(service.run(requests)));
        }
        let router = Router::new(self.id, self.senders, self.metadata_tx, metadata);
        shard.own_task(glommio::spawn_local(front_end(router)));
        if self.status.send(StartStatus::Ready(reports)).is_err() {
            return;
        }
        // The loop gets its own task queue with ten times the default shares. glommio runs a
        // queue's tasks until it is empty or the preemption timer fires, then polls I/O and
        // picks the queue with the least weighted runtime, so the loop goes first. (A
        // `Latency::Matters` queue would send its disk I/O through glommio's latency ring,
        // which writes more slowly.)
        let queue = glommio::executor().create_task_queue(
            glommio::Shares::Static(SHARD_LOOP_SHARES),
            glommio::Latency::NotImportant,
            "shard-loop",
        );
        match glommio::spawn_local_into(shard.run(self.requests, self.control), queue) {
            Ok(task) => task.await,
            Err(error) => tracing::error!(shard = %self.id, %error, "cannot start the shard loop"),
        }
    }
}

fn builder(config: &EngineConfig, index: usize) -> LocalExecutorBuilder {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let placement = if config.pin_cpus {
        Placement::Fixed(index % cpus)
    } else {
        Placement::Unbound
    };
    let builder = LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{index}"))
        .io_memory(config.limits.io_memory_bytes)
        .ring_depth(config.limits.ring_depth)
        .preempt_timer(PREEMPT_TIMER);
    match config.limits.spin_before_park_us {
        0 => builder,
        spin => builder.spin_before_park(std::time::Duration::from_micros(spin)),
    }
}

/// Shards placed on shards that no longer exist (fewer `--cores` than before) move to
/// `placed % shard_count`.
fn place_on_shards(snapshot: MetadataSnapshot, shard_count: usize) -> MetadataSnapshot {
    let mut placed = snapshot.clone();
    for topic in snapshot.topics() {
        if topic
            .partitions
            .iter()
            .any(|owner| owner.index() >= shard_count)
        {
            let mut moved = crate::metadata::TopicMeta::clone(topic);
            for owner in &mut moved.partitions {
                let index = owner.index() % shard_count;
                *owner = ShardId::new(u16::try_from(index).expect("validated shard count"));
            }
            tracing::info!(topic = %moved.name, shards = shard_count, "partitions moved to the shards that exist");
            placed = placed.with_topic(moved);
        }
    }
    placed
}

/// Adds what to do about io_uring's locked-memory needs to an executor error.
fn memlock_hint(error: &str) -> String {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max locked memory"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    format!(
        "{error} (io_uring rings and registered buffers need locked memory; {limit}; raise it with \
         `ulimit -l`, or lower io_memory_bytes and the shard count)"
    )
}
