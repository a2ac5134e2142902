//! `strand load`: a load generator that measures any Kafka-compatible broker the same way,
//! through librdkafka. Workloads: produce, consume, e2e, pubsub, queue and request-reply. Each
//! run shows a progress bar, then a table of throughput and latency percentiles, checks what
//! it measured against what the broker stored, and can write the figures as JSON.

mod clients;
mod consume;
mod groups;
mod ledger;
mod pacing;
mod produce;
mod progress;
mod receiver;
mod report;
mod request_reply;
mod sender;
mod stamp;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use clients::Settings;
use pacing::Pacer;
use progress::{Goal, Progress};
use report::Report;
use sender::{SenderPlan, Sent};
use stamp::{Clock, STAMP_BYTES};
use stats::Recorder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Producers only; checks the broker stored every acknowledged message.
    Produce,
    /// Consumers reading a prepared topic from its start (prepared with --messages if empty).
    Consume,
    /// Producers and one group of consumers at once; end-to-end latency from each message's
    /// send timestamp.
    E2e,
    /// Producers and --groups consumer groups that each read everything.
    Pubsub,
    /// Producers and one group of --consumers members sharing the work; checks each message is
    /// consumed once.
    Queue,
    /// Requesters send with reply-to and correlation-id headers, responders answer on the reply
    /// topic; round-trip latency. One request in flight per requester unless --rate is given.
    RequestReply,
}

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct LoadArgs {
    #[arg(value_enum)]
    pub workload: Workload,
    /// The topic [default: a new topic for the run, deleted after it; for `consume`,
    /// strand-load-consume, which is kept].
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions of the topics the run creates.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor of the topics the run creates (3 for a three-node Strand
    /// cluster's chains of three).
    #[arg(long, default_value_t = 1)]
    pub replicas: i32,
    /// Bytes of each message's value (at least 24: the stamp the run reads back).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages to send, across all producers.
    #[arg(long, conflicts_with = "duration")]
    pub messages: Option<u64>,
    /// How long to send, after the warm-up: 30, 30s, 500ms, 2m [default: 10s when
    /// --messages is not given].
    #[arg(long, value_parser = parse_duration)]
    #[serde(serialize_with = "seconds")]
    pub duration: Option<Duration>,
    /// Messages per second across all producers; latency then counts from each message's
    /// intended send time [default: as fast as the broker takes them].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Producer (or requester) clients.
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    /// Consumer (or responder) clients in each group [default: 3 for queue, else 1].
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Consumer groups of the pubsub workload.
    #[arg(long, default_value_t = 2)]
    pub groups: u32,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// librdkafka's batch.size: the most bytes in one batch.
    #[arg(long)]
    pub batch_bytes: Option<u32>,
    /// librdkafka's linger.ms [default: 0 for request-reply, else librdkafka's 5].
    #[arg(long)]
    pub linger_ms: Option<f64>,
    /// Seconds at the start that are run but not measured.
    #[arg(long, value_parser = parse_duration, default_value = "0")]
    #[serde(serialize_with = "seconds_plain")]
    pub warmup: Duration,
    /// Write the figures, with these parameters, to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub json: Option<PathBuf>,
    /// Keep the topics the run created.
    #[arg(long)]
    pub keep_topic: bool,
    /// A librdkafka property for every client, KEY=VALUE (repeatable), like kcat's -X.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub client_property: Vec<String>,
}

#[allow(clippy::ref_option)]
fn seconds<S: serde::Serializer>(value: &Option<Duration>, out: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => out.serialize_f64(duration.as_secs_f64()),
        None => out.serialize_none(),
    }
}

fn seconds_plain<S: serde::Serializer>(value: &Duration, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_f64(value.as_secs_f64())
}

/// `30`, `30s`, `1.5s`, `500ms` or `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(number) = text.strip_suffix("ms") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('m') {
        (number, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 500ms or 2m"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "{text:?} is not a duration such as 30s, 500ms or 2m"
        ));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// When a run's sends start, when measuring starts, and when sending stops.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub clock: Clock,
    pub start: Instant,
    pub measure_from: Instant,
    pub deadline: Option<Instant>,
}

/// A run in progress: its options, client settings and id.
#[derive(Debug)]
pub struct Run {
    pub args: LoadArgs,
    pub settings: Settings,
    /// Tells this run's messages from others on a shared topic.
    pub id: u32,
    pub progress: Arc<AtomicU64>,
    pub started_unix_ms: u64,
}

/// Called after each send with its sequence number; request-reply waits there for the reply.
pub type AfterSend = Box<dyn FnMut(u64) + Send>;

/// The senders of a run, once they are done.
#[derive(Debug)]
pub struct Senders {
    pub sent: Vec<Sent>,
    pub schedule: Schedule,
    pub finished: Instant,
}

impl Senders {
    pub fn acked(&self) -> u64 {
        self.sent.iter().map(|sent| sent.acked).sum()
    }

    pub fn recorder(&self) -> Recorder {
        let mut all = Recorder::new();
        for sent in &self.sent {
            all.merge(&sent.recorder);
        }
        all
    }

    pub fn acked_by_partition(&self) -> Vec<u64> {
        let mut all: Vec<u64> = Vec::new();
        for sent in &self.sent {
            if all.len() < sent.acked_by_partition.len() {
                all.resize(sent.acked_by_partition.len(), 0);
            }
            for (total, acked) in all.iter_mut().zip(&sent.acked_by_partition) {
                *total += acked;
            }
        }
        all
    }

    pub fn first_error(&self) -> Option<&str> {
        self.sent
            .iter()
            .find_map(|sent| sent.first_error.as_deref())
    }

    /// Seconds from the end of the warm-up until the senders were done.
    pub fn measured_seconds(&self) -> f64 {
        self.finished
            .saturating_duration_since(self.schedule.measure_from)
            .as_secs_f64()
    }
}

impl Run {
    fn new(bootstrap: &str, mut args: LoadArgs) -> anyhow::Result<Run> {
        validate(&args)?;
        if args.messages.is_none() && args.duration.is_none() {
            args.duration = Some(Duration::from_secs(10));
        }
        if args.consumers.is_none() {
            args.consumers = Some(if args.workload == Workload::Queue {
                3
            } else {
                1
            });
        }
        if args.linger_ms.is_none() && args.workload == Workload::RequestReply {
            args.linger_ms = Some(0.0);
        }
        let now = stamp::unix_nanos(std::time::SystemTime::now());
        #[allow(clippy::cast_possible_truncation)]
        let id = (now ^ (now >> 32) ^ u64::from(std::process::id()).rotate_left(16)) as u32;
        let settings = Settings {
            bootstrap: bootstrap.to_string(),
            acks: args.acks.clone(),
            compression: args.compression.clone(),
            batch_bytes: args.batch_bytes,
            linger_ms: args.linger_ms,
            replicas: args.replicas,
            extra: clients::properties(&args.client_property)?,
        };
        Ok(Run {
            args,
            settings,
            id,
            progress: Arc::new(AtomicU64::new(0)),
            started_unix_ms: now / 1_000_000,
        })
    }

    pub fn consumers(&self) -> u32 {
        self.args.consumers.unwrap_or(1)
    }

    /// The run's topic: `--topic`, or a new name; `true` when the run made the name up.
    pub fn topic(&self) -> (String, bool) {
        match &self.args.topic {
            Some(topic) => (topic.clone(), false),
            None => {
                let workload = serde_json::to_value(self.args.workload)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_string))
                    .unwrap_or_default();
                (format!("strand-load-{workload}-{:08x}", self.id), true)
            }
        }
    }

    pub fn goal(&self) -> Goal {
        match (self.args.messages, self.args.duration) {
            (Some(messages), _) => Goal::Messages(messages),
            (None, duration) => Goal::Duration(self.args.warmup + duration.unwrap_or_default()),
        }
    }

    /// Runs `--producers` senders to `topic`: each connects, then all start together once
    /// `on_go` has seen the schedule. Shows the progress bar of `progress_label` meanwhile.
    pub fn senders(
        &self,
        topic: &str,
        reply_to: Option<&str>,
        mut hooks: Vec<AfterSend>,
        on_go: impl FnOnce(&Schedule),
    ) -> anyhow::Result<Senders> {
        let producers = self.args.producers;
        let config = self.settings.producer();
        let mut threads = Vec::new();
        let (ready_tx, ready_rx) = flume::bounded::<anyhow::Result<()>>(producers as usize);
        let mut go_txs = Vec::new();
        for _ in 0..producers {
            let (go_tx, go_rx) = flume::bounded::<Option<SenderPlan>>(1);
            go_txs.push(go_tx);
            let config = config.clone();
            let topic = topic.to_string();
            let progress = Arc::clone(&self.progress);
            let ready_tx = ready_tx.clone();
            let mut hook: AfterSend = if hooks.is_empty() {
                Box::new(|_| {})
            } else {
                hooks.remove(0)
            };
            threads.push(std::thread::spawn(move || -> anyhow::Result<Sent> {
                let producer = match sender::producer(&config, &topic, progress) {
                    Ok(producer) => {
                        let _ = ready_tx.send(Ok(()));
                        producer
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("{error:#}")));
                        return Err(error);
                    }
                };
                match go_rx.recv() {
                    Ok(Some(plan)) => sender::send(&producer, &plan, &mut hook),
                    _ => Ok(Sent::default()),
                }
            }));
        }
        drop(ready_tx);
        let mut failure = None;
        for _ in 0..producers {
            if let Ok(Err(error)) = ready_rx.recv() {
                failure.get_or_insert(error);
            }
        }
        if let Some(error) = failure {
            for go in &go_txs {
                let _ = go.send(None);
            }
            for thread in threads {
                let _ = thread.join();
            }
            return Err(error);
        }
        let start = Instant::now();
        let schedule = Schedule {
            clock: Clock::now(),
            start,
            measure_from: start + self.args.warmup,
            deadline: self.args.duration.map(|d| start + self.args.warmup + d),
        };
        on_go(&schedule);
        for (index, go) in go_txs.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let plan = SenderPlan {
                topic: topic.to_string(),
                size: self.args.size,
                messages: self
                    .args
                    .messages
                    .map(|total| share(total, producers, index)),
                schedule,
                pacer: Pacer::new(start, self.args.rate, producers, index),
                run: self.id,
                sender: index,
                reply_to: reply_to.map(str::to_string),
            };
            let _ = go.send(Some(plan));
        }
        let mut sent = Vec::new();
        for thread in threads {
            let result = thread
                .join()
                .map_err(|_| anyhow::anyhow!("a sender thread panicked"))?;
            sent.push(result?);
        }
        Ok(Senders {
            sent,
            schedule,
            finished: Instant::now(),
        })
    }

    pub fn progress_bar(&self, label: &str) -> Progress {
        Progress::start(label, self.goal(), Arc::clone(&self.progress))
    }

    pub fn report(&self, duration_s: f64, main: &Recorder) -> Report {
        let parameters = serde_json::to_value(&self.args).unwrap_or_default();
        let workload = parameters["workload"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Report::new(
            &workload,
            &self.settings.bootstrap,
            parameters,
            self.started_unix_ms,
            duration_s,
            main,
        )
    }

    /// Deletes topics the run named itself, unless told to keep them.
    pub fn clean_up(&self, topics: &[&str]) {
        if self.args.topic.is_none()
            && !self.args.keep_topic
            && let Err(error) = self.settings.delete_topics(topics)
        {
            eprintln!("strand load: {error:#}");
        }
    }
}

/// After the senders finish, a consumer side that sees nothing new for this long is given up on.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until `seen()` reaches `target`, nothing new arrives for [`IDLE_TIMEOUT`], or
/// `drained_by` passes, whichever comes first.
pub fn drain(seen: impl Fn() -> u64, target: u64, drained_by: Instant) {
    let mut last = (seen(), Instant::now());
    while last.0 < target && Instant::now() < drained_by && last.1.elapsed() < IDLE_TIMEOUT {
        std::thread::sleep(Duration::from_millis(10));
        let now_seen = seen();
        if now_seen != last.0 {
            last = (now_seen, Instant::now());
        }
    }
}

/// However they trickle, consumers get at most this long after the senders finish to catch up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Sender `index`'s part of `total` messages split over `senders`.
pub fn share(total: u64, senders: u32, index: u32) -> u64 {
    let senders = u64::from(senders.max(1));
    total / senders + u64::from(u64::from(index) < total % senders)
}

fn validate(args: &LoadArgs) -> anyhow::Result<()> {
    if args.size < STAMP_BYTES {
        bail!(
            "--size {} is too small: messages carry a {STAMP_BYTES}-byte stamp",
            args.size
        );
    }
    if args.replicas < 1 {
        bail!("--replicas must be at least 1");
    }
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    if args.producers < 1 || args.consumers == Some(0) || args.groups < 1 {
        bail!("--producers, --consumers and --groups must be at least 1");
    }
    if !matches!(args.acks.as_str(), "0" | "1" | "all" | "-1") {
        bail!("--acks {:?}: expected 0, 1 or all", args.acks);
    }
    if !matches!(
        args.compression.as_str(),
        "none" | "gzip" | "snappy" | "lz4" | "zstd"
    ) {
        bail!(
            "--compression {:?}: expected none, gzip, snappy, lz4 or zstd",
            args.compression
        );
    }
    if args
        .rate
        .is_some_and(|rate| !rate.is_finite() || rate <= 0.0)
    {
        bail!("--rate must be a positive number of messages per second");
    }
    if args.messages == Some(0) {
        bail!("--messages must be at least 1");
    }
    if args.acks == "0" && args.workload != Workload::Produce {
        // Nothing is acknowledged, so nothing could be checked as received.
        bail!("--acks 0 is only for the produce workload");
    }
    Ok(())
}

/// Runs the workload; `Ok(false)` when a check failed or errors were counted.
pub fn run(bootstrap: &str, args: LoadArgs) -> anyhow::Result<bool> {
    let run = Run::new(bootstrap, args)?;
    let report = match run.args.workload {
        Workload::Produce => produce::run(&run)?,
        Workload::Consume => consume::run(&run)?,
        Workload::E2e | Workload::Pubsub | Workload::Queue => groups::run(&run)?,
        Workload::RequestReply => request_reply::run(&run)?,
    };
    print!("{}", report.table());
    if let Some(path) = &run.args.json {
        report
            .write_json(path)
            .with_context(|| format!("writing --json {}", path.display()))?;
    }
    Ok(report.passed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_or_without_units() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn messages_split_evenly_over_senders() {
        let shares: Vec<u64> = (0..3).map(|index| share(10, 3, index)).collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert_eq!((0..7).map(|index| share(1000, 7, index)).sum::<u64>(), 1000);
        assert_eq!(share(5, 1, 0), 5);
    }
}
