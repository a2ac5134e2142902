//! One sending thread: a librdkafka producer sending stamped messages on the pacer's schedule,
//! and counting what the broker acknowledged, at which offsets, and how long each took.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::Schedule;
use super::pacing::Pacer;
use super::stamp::Stamp;
use super::stats::Recorder;

/// How long a sender waits for its last acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// What one sender does.
#[derive(Debug, Clone)]
pub struct SenderPlan {
    pub topic: String,
    pub size: usize,
    /// This sender's share of `--messages`; `None` sends until the schedule's deadline.
    pub messages: Option<u64>,
    pub schedule: Schedule,
    pub pacer: Pacer,
    pub run: u32,
    pub sender: u32,
    /// For request-reply: the topic replies go to, sent as the `reply-to` header with a
    /// `correlation-id` header.
    pub reply_to: Option<String>,
}

/// What one sender saw acknowledged.
#[derive(Debug, Default)]
pub struct Sent {
    /// Acknowledged sends in the measured window, with their latency.
    pub recorder: Recorder,
    /// Every acknowledged send by partition, warm-up included.
    pub acked_by_partition: Vec<u64>,
    pub acked: u64,
    pub first_error: Option<String>,
}

pub struct Acks {
    /// Set when sending starts; nothing is delivered before.
    schedule: OnceLock<Schedule>,
    sent: Mutex<Sent>,
    progress: Arc<AtomicU64>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    /// Nanoseconds from the schedule's start to the message's intended send time.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, intended_nanos: usize) {
        let now = Instant::now();
        let Some(schedule) = self.schedule.get() else {
            return;
        };
        let intended = schedule.start + Duration::from_nanos(intended_nanos as u64);
        let Ok(mut sent) = self.sent.lock() else {
            return;
        };
        match result {
            Ok(message) => {
                sent.acked += 1;
                let partition = usize::try_from(message.partition()).unwrap_or(0);
                if sent.acked_by_partition.len() <= partition {
                    sent.acked_by_partition.resize(partition + 1, 0);
                }
                sent.acked_by_partition[partition] += 1;
                if intended >= schedule.measure_from {
                    let bytes = message.payload_len();
                    let at = now.saturating_duration_since(schedule.measure_from);
                    sent.recorder.record(Some(now - intended), bytes, at);
                    self.progress.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err((error, _)) => {
                sent.recorder.error();
                if sent.first_error.is_none() {
                    sent.first_error = Some(error.to_string());
                }
            }
        }
    }
}

/// librdkafka's callbacks are served by the producer's own polling thread. (`BaseProducer::poll`
/// with a timeout spins through its last millisecond, which took a third of the load
/// generator's CPU when the sender thread polled.)
pub type LoadProducer = ThreadedProducer<Acks>;

/// A producer whose acknowledgements count towards `progress`, connected to the broker that
/// leads `topic` so the first sends do not wait for it.
pub fn producer(
    config: &rdkafka::ClientConfig,
    topic: &str,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<LoadProducer> {
    let producer: LoadProducer = config
        .create_with_context(Acks {
            schedule: OnceLock::new(),
            sent: Mutex::new(Sent::default()),
            progress,
        })
        .context("creating a producer")?;
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .with_context(|| format!("reading the metadata of {topic}"))?;
    Ok(producer)
}

/// Sends on `plan`'s schedule until its count or deadline, calling `after_send` with each
/// sequence number sent (request-reply waits there for the reply), then waits for the last
/// acknowledgements.
pub fn send(
    producer: &LoadProducer,
    plan: &SenderPlan,
    mut after_send: impl FnMut(u64),
) -> anyhow::Result<Sent> {
    let _ = producer.context().schedule.set(plan.schedule);
    let mut value = vec![0x5A_u8; plan.size];
    let correlation_prefix = format!("{}-{}-", plan.run, plan.sender);
    for sequence in 0.. {
        if plan.messages.is_some_and(|limit| sequence >= limit) {
            break;
        }
        let intended = plan.pacer.wait(sequence, std::thread::sleep);
        // Unpaced, `intended` is now; paced, messages due after the deadline are not sent.
        if plan.schedule.deadline.is_some_and(|end| intended >= end) {
            break;
        }
        Stamp {
            sent_nanos: plan.schedule.clock.unix_nanos_at(intended),
            sequence,
            sender: plan.sender,
            run: plan.run,
        }
        .write(&mut value);
        let opaque = usize::try_from((intended - plan.schedule.start).as_nanos()).unwrap_or(0);
        let correlation;
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&plan.topic, opaque).payload(&value[..]);
        if let Some(reply_to) = &plan.reply_to {
            correlation = format!("{correlation_prefix}{sequence}");
            record = record.headers(
                OwnedHeaders::new_with_capacity(2)
                    .insert(Header {
                        key: "reply-to",
                        value: Some(reply_to.as_bytes()),
                    })
                    .insert(Header {
                        key: "correlation-id",
                        value: Some(correlation.as_bytes()),
                    }),
            );
        }
        enqueue(producer, record)?;
        after_send(sequence);
    }
    producer
        .flush(FLUSH_TIMEOUT)
        .context("waiting for the last acknowledgements")?;
    let sent = std::mem::take(
        &mut *producer
            .context()
            .sent
            .lock()
            .map_err(|_| anyhow::anyhow!("a delivery callback panicked"))?,
    );
    Ok(sent)
}

/// While librdkafka's queue is full, how long a sender waits before it tries again.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_micros(200);

/// Hands `record` to librdkafka, waiting while its queue is full.
pub fn enqueue<'a, C: ProducerContext<DeliveryOpaque = D>, D: rdkafka::util::IntoOpaque>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'a, [u8], [u8], D>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(QUEUE_FULL_BACKOFF);
            }
            Err((error, _)) => return Err(error).context("sending a message"),
        }
    }
}
