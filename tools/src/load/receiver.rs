//! One receiving thread: a group member reading stamped messages, recording end-to-end latency
//! and marking each message in its group's ledger so duplicates and gaps show.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;

use super::Schedule;
use super::ledger::Ledger;
use super::stamp::{Stamp, unix_nanos};
use super::stats::Recorder;

/// How long members may take to be given all partitions.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// One consumer group of a run, shared by its members' threads.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    pub ledger: Mutex<Ledger>,
    /// Partitions each member holds now.
    assigned: Vec<AtomicUsize>,
    pub stop: AtomicBool,
    /// Set when sending starts.
    pub schedule: OnceLock<Schedule>,
}

impl Group {
    pub fn new(name: String, members: usize) -> Group {
        Group {
            name,
            ledger: Mutex::new(Ledger::default()),
            assigned: (0..members).map(|_| AtomicUsize::new(0)).collect(),
            stop: AtomicBool::new(false),
            schedule: OnceLock::new(),
        }
    }

    /// Partitions held by all members together.
    pub fn assigned(&self) -> usize {
        self.assigned
            .iter()
            .map(|held| held.load(Ordering::Relaxed))
            .sum()
    }

    /// Waits until the members together hold all `partitions` of `topic`.
    pub fn await_assignment(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let wanted = usize::try_from(partitions).context("partition count")?;
        let deadline = Instant::now() + ASSIGNMENT_TIMEOUT;
        while self.assigned() < wanted {
            anyhow::ensure!(
                Instant::now() < deadline,
                "group {} was not given all {partitions} partitions of {topic} within {}s",
                self.name,
                ASSIGNMENT_TIMEOUT.as_secs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn distinct(&self) -> u64 {
        self.ledger.lock().map_or(0, |ledger| ledger.distinct())
    }

    pub fn duplicates(&self) -> u64 {
        self.ledger.lock().map_or(0, |ledger| ledger.duplicates())
    }
}

/// Keeps the group's view of who holds what, and commits before giving partitions up so the
/// next holder starts where this one stopped.
pub struct Membership {
    group: Arc<Group>,
    member: usize,
}

impl ClientContext for Membership {}

impl ConsumerContext for Membership {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Revoke(_)) {
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
            self.group.assigned[self.member].store(0, Ordering::Relaxed);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.group.assigned[self.member].store(partitions.count(), Ordering::Relaxed);
        }
    }
}

pub type LoadConsumer = BaseConsumer<Membership>;

/// Member `member` of `group`, subscribed to `topic`.
pub fn member(
    config: &rdkafka::ClientConfig,
    group: &Arc<Group>,
    member: usize,
    topic: &str,
) -> anyhow::Result<LoadConsumer> {
    let consumer: LoadConsumer = config
        .create_with_context(Membership {
            group: Arc::clone(group),
            member,
        })
        .context("creating a consumer")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    Ok(consumer)
}

/// What one member received.
#[derive(Debug, Default)]
pub struct Received {
    /// This run's messages delivered in the measured window, with end-to-end latency.
    pub recorder: Recorder,
    pub first_error: Option<String>,
}

/// Reads until the group is told to stop.
pub fn receive(consumer: &LoadConsumer, group: &Group, run: u32, progress: &AtomicU64) -> Received {
    let mut received = Received::default();
    while !group.stop.load(Ordering::Relaxed) {
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = match result {
            Ok(message) => message,
            Err(error) => {
                received.recorder.error();
                received
                    .first_error
                    .get_or_insert_with(|| error.to_string());
                continue;
            }
        };
        // Messages of other runs, or without a stamp, are not this run's to count.
        let Some(stamp) = message
            .payload()
            .and_then(Stamp::read)
            .filter(|s| s.run == run)
        else {
            continue;
        };
        let now = unix_nanos(std::time::SystemTime::now());
        let Some(schedule) = group.schedule.get() else {
            continue;
        };
        let measured_from = schedule.clock.unix_nanos_at(schedule.measure_from);
        let first = group
            .ledger
            .lock()
            .is_ok_and(|mut ledger| ledger.mark(stamp.sender, stamp.sequence));
        if first && stamp.sent_nanos >= measured_from {
            let latency = Duration::from_nanos(now.saturating_sub(stamp.sent_nanos));
            let at = Instant::now().saturating_duration_since(schedule.measure_from);
            received
                .recorder
                .record(Some(latency), message.payload_len(), at);
            progress.fetch_add(1, Ordering::Relaxed);
        }
    }
    received
}
