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
use crate::request::{ShardRequest, ShutdownReport};
use crate::router::Router;
use crate::shard::Shard;

/// Admin requests waiting for the metadata service.
const METADATA_QUEUE_DEPTH_MAX: usize = 64;

/// Running shards.
#[derive(Debug)]
pub struct ShardSet {
    senders: Vec<flume::Sender<ShardRequest>>,
    executors: Vec<glommio::ExecutorJoinHandle<()>>,
    config: EngineConfig,
    recovery: Vec<RecoveryReport>,
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
        let snapshot = place_on_shards(metadata_store::load(&data_dir)?, config.shard_count);
        metadata_store::store(&data_dir, &snapshot)?;
        let clean = layout::prepare(&data_dir, &snapshot).map_err(data_dir_error)?;
        let snapshot = Arc::new(snapshot);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.shard_count)
            .map(|_| flume::bounded(config.limits.shard_queue_depth_max))
            .unzip();
        let (metadata_tx, metadata_rx) = flume::bounded(METADATA_QUEUE_DEPTH_MAX);
        let (ready_tx, ready_rx) = flume::unbounded();
        let front_end = Arc::new(front_end);
        let mut executors = Vec::with_capacity(config.shard_count);
        for (index, requests) in receivers.into_iter().enumerate() {
            let context = ShardContext {
                id: ShardId::new(u16::try_from(index).expect("validated shard count")),
                config: config.clone(),
                snapshot: snapshot.clone(),
                clean,
                senders: senders.clone(),
                requests,
                metadata_tx: metadata_tx.clone(),
                metadata_rx: (index == 0).then(|| metadata_rx.clone()),
                ready: ready_tx.clone(),
            };
            let front_end = front_end.clone();
            let executor = builder(&config, index)
                .spawn(move || context.run(move |router| front_end(router)))
                .map_err(|error| EngineError::Executor {
                    shard: index,
                    detail: memlock_hint(&error.to_string()),
                })?;
            executors.push(executor);
        }
        drop(ready_tx);
        let mut set = ShardSet {
            senders,
            executors,
            config,
            recovery: Vec::new(),
        };
        for _ in 0..set.executors.len() {
            match ready_rx.recv() {
                Ok(reports) => set.recovery.extend(reports),
                Err(_) => return Err(set.fail_start()),
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

    /// Stops every shard: front ends are cancelled, appends already taken are committed and
    /// answered, active segments are sealed. Blocks until the executors have exited.
    pub fn shutdown(self) -> Result<ShutdownSummary, EngineError> {
        let mut answers = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            let (reply, answer) = futures::channel::oneshot::channel();
            if sender.send(ShardRequest::Shutdown { reply }).is_ok() {
                answers.push(answer);
            }
        }
        drop(self.senders);
        let mut summary = ShutdownSummary {
            shards: Vec::new(),
            clean: answers.len() == self.executors.len(),
        };
        for answer in answers {
            match futures::executor::block_on(answer) {
                Ok(report) => {
                    summary.clean &= report.failures.is_empty();
                    summary.shards.push(report);
                }
                Err(_) => summary.clean = false,
            }
        }
        for (shard, executor) in self.executors.into_iter().enumerate() {
            executor.join().map_err(|error| EngineError::ShardFailed {
                shard,
                detail: error.to_string(),
            })?;
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

    /// A shard died before it was ready: stop the others and report the first failure.
    fn fail_start(self) -> EngineError {
        for sender in &self.senders {
            let (reply, _) = futures::channel::oneshot::channel();
            let _ = sender.send(ShardRequest::Shutdown { reply });
        }
        drop(self.senders);
        let mut first = None;
        for (shard, executor) in self.executors.into_iter().enumerate() {
            if let Err(error) = executor.join() {
                first.get_or_insert(EngineError::Executor {
                    shard,
                    detail: memlock_hint(&error.to_string()),
                });
            }
        }
        first.unwrap_or(EngineError::ShardFailed {
            shard: 0,
            detail: "a shard exited while starting".into(),
        })
    }
}

/// Everything a shard's executor thread needs; moved into it.
struct ShardContext {
    id: ShardId,
    config: EngineConfig,
    snapshot: Arc<MetadataSnapshot>,
    clean: bool,
    senders: Vec<flume::Sender<ShardRequest>>,
    requests: flume::Receiver<ShardRequest>,
    metadata_tx: flume::Sender<MetadataRequest>,
    metadata_rx: Option<flume::Receiver<MetadataRequest>>,
    ready: flume::Sender<Vec<RecoveryReport>>,
}

impl ShardContext {
    async fn run<Fut: Future<Output = ()> + 'static>(self, front_end: impl FnOnce(Router) -> Fut) {
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
        if self.ready.send(reports).is_err() {
            return;
        }
        shard.run(self.requests).await;
    }
}

fn builder(config: &EngineConfig, index: usize) -> LocalExecutorBuilder {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let placement = if config.pin_cpus {
        Placement::Fixed(index % cpus)
    } else {
        Placement::Unbound
    };
    LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{index}"))
        .io_memory(config.limits.io_memory_bytes)
        .ring_depth(config.limits.ring_depth)
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
