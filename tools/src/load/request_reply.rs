//! The `request-reply` workload. Requesters send to the request topic with `reply-to` and
//! `correlation-id` headers; responders, one consumer group, answer each request on the topic
//! its `reply-to` names with the same correlation id and value; a reply reader matches the
//! answers. Round-trip latency runs from a request's intended send time to its reply's
//! arrival. Without --rate each requester keeps one request in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::ledger::Ledger;
use super::receiver::{self, Group};
use super::report::{Check, Report};
use super::sender::enqueue;
use super::stamp::{Stamp, unix_nanos};
use super::stats::Recorder;
use super::{AfterSend, DRAIN_TIMEOUT, Run, Schedule, drain};

/// How long a requester waits for one reply before counting it lost and going on.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Replies read back, shared by the reply reader and the run.
#[derive(Debug, Default)]
struct Replies {
    ledger: Mutex<Ledger>,
    recorder: Mutex<Recorder>,
    stop: AtomicBool,
}

pub fn run(run: &Run) -> anyhow::Result<Report> {
    let (topic, made_up) = run.topic();
    let reply_topic = format!("{topic}-replies");
    let partitions = run.settings.ensure_topic(&topic, run.args.partitions)?;
    let reply_partitions = run
        .settings
        .ensure_topic(&reply_topic, run.args.partitions)?;
    let responders = Arc::new(Group::new(
        format!("strand-load-{:08x}-responders", run.id),
        run.consumers() as usize,
    ));
    let mut responder_threads = Vec::new();
    for member in 0..run.consumers() as usize {
        let consumer = receiver::member(
            &run.settings.consumer(&responders.name),
            &responders,
            member,
            &topic,
        )?;
        let producer: ThreadedProducer<DefaultProducerContext> =
            run.settings
                .producer()
                .create()
                .context("creating a responder's producer")?;
        let group = Arc::clone(&responders);
        responder_threads.push(std::thread::spawn(move || {
            respond(&consumer, &producer, &group)
        }));
    }
    let outcome = measure(
        run,
        &topic,
        partitions,
        &reply_topic,
        reply_partitions,
        &responders,
    );
    responders.stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for thread in responder_threads {
        answered += thread
            .join()
            .map_err(|_| anyhow::anyhow!("a responder thread panicked"))?;
    }
    if made_up {
        run.clean_up(&[&topic, &reply_topic]);
    }
    let (mut report, mut checks, requested) = outcome?;
    checks.push(Check::new(
        "responders answered",
        answered >= requested,
        format!("{answered} replies sent for {requested} acknowledged requests"),
    ));
    report.checks = checks;
    Ok(report)
}

fn measure(
    run: &Run,
    topic: &str,
    partitions: i32,
    reply_topic: &str,
    reply_partitions: i32,
    responders: &Group,
) -> anyhow::Result<(Report, Vec<Check>, u64)> {
    responders.await_assignment(topic, partitions)?;
    let reader = reply_reader(run, reply_topic, reply_partitions)?;

    let producers = run.args.producers as usize;
    let closed_loop = run.args.rate.is_none();
    let mut waiters = Vec::new();
    let mut hooks: Vec<AfterSend> = Vec::new();
    for _ in 0..producers {
        let (tx, rx) = flume::bounded::<u64>(1024);
        waiters.push(tx);
        if closed_loop {
            hooks.push(Box::new(move |sequence| await_reply(&rx, sequence)));
        }
    }
    let replies = Arc::new(Replies::default());
    let schedule_cell = Arc::new(std::sync::OnceLock::<Schedule>::new());
    let reader_thread = {
        let replies = Arc::clone(&replies);
        let schedule_cell = Arc::clone(&schedule_cell);
        let progress = Arc::clone(&run.progress);
        let id = run.id;
        std::thread::spawn(move || {
            read_replies(&reader, &replies, &schedule_cell, &waiters, id, &progress);
        })
    };
    let progress = run.progress_bar("request-reply");
    let senders = run.senders(topic, Some(reply_topic), hooks, |schedule| {
        let _ = schedule_cell.set(*schedule);
    });
    let requested = senders.as_ref().map_or(0, super::Senders::acked);
    if senders.is_ok() {
        let seen = || replies.ledger.lock().map_or(0, |ledger| ledger.distinct());
        drain(seen, requested, Instant::now() + DRAIN_TIMEOUT);
    }
    let finished = Instant::now();
    progress.finish();
    replies.stop.store(true, Ordering::Relaxed);
    let _ = reader_thread.join();
    let senders = senders?;
    let recorder = replies
        .recorder
        .lock()
        .map_err(|_| anyhow::anyhow!("the reply reader panicked"))?
        .clone();
    let (distinct, duplicates) = replies
        .ledger
        .lock()
        .map_or((0, 0), |ledger| (ledger.distinct(), ledger.duplicates()));
    let seconds = finished
        .saturating_duration_since(senders.schedule.measure_from)
        .as_secs_f64();
    let mut report = run.report(seconds, &recorder);
    report.with_latency("round_trip", &recorder);
    report.with_latency("produce", &senders.recorder());
    let mut checks = vec![
        Check::new(
            "every request answered",
            distinct >= requested,
            format!("{distinct} of {requested} acknowledged requests"),
        ),
        Check::new(
            "answered once",
            duplicates == 0,
            format!("{duplicates} replies arrived more than once"),
        ),
    ];
    if let Some(error) = senders.first_error() {
        checks.push(Check::new(
            "deliveries",
            false,
            format!("first error: {error}"),
        ));
    }
    Ok((report, checks, requested))
}

/// A reader of the reply topic from its current end, before any request is sent.
fn reply_reader(
    run: &Run,
    reply_topic: &str,
    reply_partitions: i32,
) -> anyhow::Result<BaseConsumer> {
    let ends = run.settings.watermarks(reply_topic, reply_partitions)?;
    let mut assignment = TopicPartitionList::new();
    for (partition, (_, end)) in ends.iter().enumerate() {
        let partition = i32::try_from(partition).unwrap_or(i32::MAX);
        assignment.add_partition_offset(reply_topic, partition, Offset::Offset(*end))?;
    }
    let reader: BaseConsumer = run
        .settings
        .consumer(&format!("strand-load-{:08x}-replies", run.id))
        .create()
        .context("creating the reply reader")?;
    reader
        .assign(&assignment)
        .context("assigning reply partitions")?;
    Ok(reader)
}

/// Waits for the reply to `sequence`.
fn await_reply(replies: &flume::Receiver<u64>, sequence: u64) {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match replies.recv_timeout(left) {
            Ok(answered) if answered >= sequence => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

fn read_replies(
    reader: &BaseConsumer,
    replies: &Replies,
    schedule: &std::sync::OnceLock<Schedule>,
    waiters: &[flume::Sender<u64>],
    run: u32,
    progress: &AtomicU64,
) {
    while !replies.stop.load(Ordering::Relaxed) {
        let Some(Ok(message)) = reader.poll(Duration::from_millis(50)) else {
            continue;
        };
        let now = unix_nanos(std::time::SystemTime::now());
        let Some(stamp) = message.payload().and_then(Stamp::read) else {
            continue;
        };
        let Some(schedule) = schedule.get() else {
            continue;
        };
        if stamp.run != run {
            continue;
        }
        let first = replies
            .ledger
            .lock()
            .is_ok_and(|mut ledger| ledger.mark(stamp.sender, stamp.sequence));
        if let Some(waiter) = waiters.get(stamp.sender as usize) {
            let _ = waiter.try_send(stamp.sequence);
        }
        if first && stamp.sent_nanos >= schedule.clock.unix_nanos_at(schedule.measure_from) {
            let round_trip = Duration::from_nanos(now.saturating_sub(stamp.sent_nanos));
            let at = Instant::now().saturating_duration_since(schedule.measure_from);
            if let Ok(mut recorder) = replies.recorder.lock() {
                recorder.record(Some(round_trip), message.payload_len(), at);
            }
            progress.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A responder: answers each request on its `reply-to` topic until told to stop; returns how
/// many it answered.
fn respond(
    consumer: &receiver::LoadConsumer,
    producer: &ThreadedProducer<DefaultProducerContext>,
    group: &Group,
) -> u64 {
    let mut answered = 0;
    while !group.stop.load(Ordering::Relaxed) {
        let Some(Ok(request)) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let (mut reply_to, mut correlation) = (None, None);
        if let Some(headers) = request.headers() {
            for header in headers.iter() {
                match header.key {
                    "reply-to" => reply_to = header.value,
                    "correlation-id" => correlation = header.value,
                    _ => {}
                }
            }
        }
        let (Some(reply_to), Some(correlation)) = (reply_to, correlation) else {
            continue;
        };
        let Ok(reply_to) = std::str::from_utf8(reply_to) else {
            continue;
        };
        let value = request.payload().unwrap_or_default();
        let record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(reply_to).payload(value).headers(
            OwnedHeaders::new_with_capacity(1).insert(Header {
                key: "correlation-id",
                value: Some(correlation),
            }),
        );
        if enqueue(producer, record).is_ok() {
            answered += 1;
        }
    }
    let _ = producer.flush(Duration::from_secs(30));
    answered
}
