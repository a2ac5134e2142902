//! The `consume` workload: --consumers readers split a prepared topic's partitions and read
//! them from the log start to the end offsets seen when the run began. An empty topic is
//! first filled with --messages (or --duration) of messages, which are not measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::Run;
use super::report::{Check, Report};
use super::stats::Recorder;

/// The topic `consume` reads when --topic is not given; kept between runs.
const DEFAULT_TOPIC: &str = "strand-load-consume";
/// A reader that gets nothing for this long gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(run: &Run) -> anyhow::Result<Report> {
    let topic = run
        .args
        .topic
        .clone()
        .unwrap_or_else(|| DEFAULT_TOPIC.to_string());
    let partitions = run.settings.ensure_topic(&topic, run.args.partitions)?;
    let mut marks = run.settings.watermarks(&topic, partitions)?;
    if marks.iter().all(|(start, end)| start >= end) {
        eprintln!("strand load: {topic} is empty; preparing it first (not measured)");
        let progress = run.progress_bar("prepare");
        let prepared = run.senders(&topic, None, Vec::new(), |_| {});
        progress.finish();
        prepared.context("preparing the topic")?;
        marks = run.settings.watermarks(&topic, partitions)?;
        run.progress.store(0, Ordering::Relaxed);
    }
    let expected: i64 = marks.iter().map(|(start, end)| end - start).sum();
    let expected = u64::try_from(expected).unwrap_or(0);
    let readers = run.consumers().min(u32::try_from(partitions).unwrap_or(1));
    let start = Instant::now();
    let deadline = run.args.duration.map(|duration| start + duration);
    let progress = super::progress::Progress::start(
        "consume",
        super::progress::Goal::Messages(expected),
        Arc::clone(&run.progress),
    );
    let mut threads = Vec::new();
    for reader in 0..readers {
        let mine: Vec<(i32, i64, i64)> = marks
            .iter()
            .enumerate()
            .filter(|(partition, _)| partition % readers as usize == reader as usize)
            .map(|(partition, (low, high))| {
                (i32::try_from(partition).unwrap_or(i32::MAX), *low, *high)
            })
            .collect();
        let config = run
            .settings
            .consumer(&format!("strand-load-{:08x}", run.id));
        let topic = topic.clone();
        let counter = Arc::clone(&run.progress);
        threads.push(std::thread::spawn(move || {
            read(&config, &topic, &mine, start, deadline, &counter)
        }));
    }
    let mut consumed = Recorder::new();
    let mut first_error = None;
    for thread in threads {
        let result = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a reader thread panicked"))?;
        match result {
            Ok(recorder) => consumed.merge(&recorder),
            Err(error) => {
                consumed.error();
                first_error.get_or_insert(format!("{error:#}"));
            }
        }
    }
    progress.finish();
    let seconds = start.elapsed().as_secs_f64();
    let mut report = run.report(seconds, &consumed);
    let complete = consumed.messages == expected;
    let cut_short = deadline.is_some_and(|end| Instant::now() >= end) && !complete;
    report.checks.push(Check::new(
        "read to the end",
        complete || cut_short,
        if cut_short {
            format!(
                "{} of {expected} before --duration ran out",
                consumed.messages
            )
        } else {
            format!("{} of {expected} messages", consumed.messages)
        },
    ));
    if let Some(error) = first_error {
        report.checks.push(Check::new("readers", false, error));
    }
    Ok(report)
}

/// Reads `partitions` (id, from, to) until each reaches its end offset, the deadline passes, or
/// nothing arrives for [`IDLE_TIMEOUT`].
fn read(
    config: &rdkafka::ClientConfig,
    topic: &str,
    partitions: &[(i32, i64, i64)],
    start: Instant,
    deadline: Option<Instant>,
    counter: &AtomicU64,
) -> anyhow::Result<Recorder> {
    let consumer: BaseConsumer = config.create().context("creating a consumer")?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    let mut ends = std::collections::HashMap::new();
    for &(partition, low, high) in partitions {
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
            ends.insert(partition, high);
            remaining += 1;
        }
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    let mut recorder = Recorder::new();
    let mut last_message = Instant::now();
    while remaining > 0 {
        if deadline.is_some_and(|end| Instant::now() >= end) {
            break;
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            anyhow::ensure!(
                last_message.elapsed() < IDLE_TIMEOUT,
                "nothing arrived for {}s with {remaining} partitions unread",
                IDLE_TIMEOUT.as_secs()
            );
            continue;
        };
        let message = result.context("reading")?;
        last_message = Instant::now();
        let Some(end) = ends.get(&message.partition()).copied() else {
            continue;
        };
        if message.offset() >= end {
            continue;
        }
        recorder.record(None, message.payload_len(), start.elapsed());
        counter.fetch_add(1, Ordering::Relaxed);
        if message.offset() + 1 == end {
            remaining -= 1;
        }
    }
    Ok(recorder)
}
