//! Driving shards from an ordinary thread: a [`ShardSet`] whose shard 0 runs closures sent
//! to it, each with that shard's [`Router`]. For tests, benchmarks and offline tools that
//! need the engine without a network front end.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::EngineConfig;
use crate::recovery::RecoveryReport;
use crate::router::Router;
use crate::shard_set::{EngineError, ShardSet, ShutdownSummary};

type Job = Box<dyn FnOnce(Router) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Jobs waiting for shard 0.
const JOB_QUEUE_DEPTH_MAX: usize = 16;

/// Why a job produced no result.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job panicked or was cancelled on shard 0")]
    Lost,
    #[error("a shard stopped while the job ran")]
    ShardDied,
    #[error("the shards are stopped")]
    Stopped,
}

/// Running shards that take jobs. Stops them when dropped.
#[derive(Debug)]
pub struct JobRunner {
    set: Option<ShardSet>,
    jobs: flume::Sender<Job>,
}

impl JobRunner {
    pub fn start(config: EngineConfig) -> Result<JobRunner, EngineError> {
        let (jobs, receiver) = flume::bounded::<Job>(JOB_QUEUE_DEPTH_MAX);
        let set = ShardSet::start(config, move |router: Router| {
            let receiver = receiver.clone();
            async move {
                if router.shard().index() != 0 {
                    return;
                }
                while let Ok(job) = receiver.recv_async().await {
                    job(router.clone()).await;
                }
            }
        })?;
        Ok(JobRunner {
            set: Some(set),
            jobs,
        })
    }

    /// Runs `work` on shard 0 with its router and returns its result.
    pub fn run<T, F, Fut>(&self, work: F) -> Result<T, JobError>
    where
        T: Send + 'static,
        F: FnOnce(Router) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let set = self.set.as_ref().ok_or(JobError::Stopped)?;
        let (done, result) = flume::bounded(1);
        let job: Job = Box::new(move |router| {
            Box::pin(async move {
                let _ = done.send(work(router).await);
            })
        });
        self.jobs.send(job).map_err(|_| JobError::Stopped)?;
        loop {
            match result.recv_timeout(Duration::from_millis(200)) {
                Ok(value) => return Ok(value),
                Err(flume::RecvTimeoutError::Timeout) if !set.all_running() => {
                    return Err(JobError::ShardDied);
                }
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => return Err(JobError::Lost),
            }
        }
    }

    pub fn recovery_reports(&self) -> &[RecoveryReport] {
        self.set.as_ref().map_or(&[], ShardSet::recovery_reports)
    }

    /// Stops the shards cleanly.
    pub fn stop(mut self) -> Result<ShutdownSummary, EngineError> {
        match self.set.take() {
            Some(set) => set.shutdown(),
            None => Ok(ShutdownSummary::default()),
        }
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        if let Some(set) = self.set.take()
            && let Err(error) = set.shutdown()
        {
            tracing::error!(%error, "shards did not stop cleanly");
        }
    }
}
