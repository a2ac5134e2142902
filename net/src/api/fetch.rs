//! Fetch: whole stored batches from each partition asked for, within the per-partition and
//! per-response byte limits (KIP-74), waiting up to `max_wait_ms` for `min_bytes` to
//! arrive. The wait is woken by the commits that grow the partitions, never by polling.
//!
//! Sessions (KIP-227) are not kept: every fetch is a full, sessionless fetch, and the
//! answer's session id 0 tells clients so.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{join_all, select_all};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use strand_engine::{Offset, PartitionOffsets};

use crate::broker::Broker;
use crate::kafka_errors::KafkaError;
use crate::timeout::within;

/// The longest a fetch waits for data, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The first version that names topics by id (KIP-516).
const TOPIC_ID_VERSION: i16 = 13;

/// One partition asked for, resolved to a topic name when it exists.
struct Wanted {
    topic: usize,
    name: Result<String, KafkaError>,
    partition: i32,
    offset: i64,
    bytes_max: usize,
}

/// What one read of a partition found.
struct Found {
    data: PartitionData,
    bytes: usize,
    /// The high watermark seen, to wait beyond; `None` after an error.
    seen: Option<Offset>,
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> Option<FetchResponse> {
    if request.session_id != 0 || request.session_epoch > 0 {
        return Some(
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code()),
        );
    }
    let wanted = resolve(broker, &request, version);
    let response_max = usize::try_from(request.max_bytes).unwrap_or(0);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    loop {
        let found = read_all(broker, &wanted, response_max, version).await;
        let bytes: usize = found.iter().map(|found| found.bytes).sum();
        let failed = found.iter().any(|found| found.seen.is_none());
        let left = deadline.saturating_duration_since(Instant::now());
        if bytes >= min_bytes || failed || left.is_zero() {
            return Some(response(&request, version, wanted, found));
        }
        let waits = wanted.iter().zip(&found).filter_map(|(wanted, found)| {
            let (name, seen) = (wanted.name.as_ref().ok()?, found.seen?);
            let partition = u32::try_from(wanted.partition).ok()?;
            Some(
                broker
                    .router
                    .wait_for_data(name, partition, seen)
                    .boxed_local(),
            )
        });
        let waits: Vec<_> = waits.collect();
        if waits.is_empty() {
            drop(waits);
            return Some(response(&request, version, wanted, found));
        }
        within(left, select_all(waits)).await;
    }
}

/// The partitions asked for, in order, with their topics resolved by name or id.
fn resolve(broker: &Broker, request: &FetchRequest, version: i16) -> Vec<Wanted> {
    let mut wanted = Vec::new();
    for (index, topic) in request.topics.iter().enumerate() {
        let name = if version >= TOPIC_ID_VERSION {
            broker
                .topic_by_id(topic.topic_id.as_bytes())
                .map(|meta| meta.name.clone())
                .ok_or_else(|| {
                    KafkaError::new(
                        ResponseError::UnknownTopicId,
                        format!("unknown topic id {}", topic.topic_id),
                    )
                })
        } else {
            Ok(topic.topic.0.to_string())
        };
        for partition in &topic.partitions {
            wanted.push(Wanted {
                topic: index,
                name: name.clone(),
                partition: partition.partition,
                offset: partition.fetch_offset,
                bytes_max: usize::try_from(partition.partition_max_bytes).unwrap_or(0),
            });
        }
    }
    wanted
}

/// Reads every partition in request order, sharing `response_max` bytes among them. Reads
/// run concurrently in groups whose limits fit in what is left of the budget.
async fn read_all(
    broker: &Broker,
    wanted: &[Wanted],
    response_max: usize,
    version: i16,
) -> Vec<Found> {
    let mut found = Vec::with_capacity(wanted.len());
    let mut left = response_max;
    let mut start = 0;
    while start < wanted.len() {
        let mut end = start;
        let mut planned = 0usize;
        while end < wanted.len() && (end == start || planned + wanted[end].bytes_max <= left) {
            planned = planned.saturating_add(wanted[end].bytes_max.min(left));
            end += 1;
        }
        let budget = left;
        let group = join_all(
            wanted[start..end]
                .iter()
                .map(|wanted| read_one(broker, wanted, wanted.bytes_max.min(budget), version)),
        )
        .await;
        for read in group {
            left = left.saturating_sub(read.bytes);
            found.push(read);
        }
        start = end;
    }
    found
}

async fn read_one(broker: &Broker, wanted: &Wanted, bytes_max: usize, version: i16) -> Found {
    let data = PartitionData::default().with_partition_index(wanted.partition);
    let read = async {
        let name = wanted.name.as_ref().map_err(Clone::clone)?;
        let unknown = || {
            KafkaError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("unknown topic or partition {name}-{}", wanted.partition),
            )
        };
        let partition = u32::try_from(wanted.partition).map_err(|_| unknown())?;
        let from = Offset::new(wanted.offset).ok_or_else(|| {
            KafkaError::new(
                ResponseError::OffsetOutOfRange,
                format!("fetch offset {} is negative", wanted.offset),
            )
        })?;
        if bytes_max == 0 {
            let offsets = broker.router.offsets(name, partition).await?;
            return Ok((Vec::new(), offsets));
        }
        let read = broker.router.read(name, partition, from, bytes_max).await?;
        Ok::<_, KafkaError>((read.bytes, read.offsets))
    };
    match read.await {
        Ok((bytes, offsets)) => Found {
            bytes: bytes.len(),
            seen: Some(offsets.high_watermark),
            data: with_offsets(data, offsets, version).with_records(Some(Bytes::from(bytes))),
        },
        Err(error) => Found {
            data: data.with_error_code(error.code()),
            bytes: 0,
            seen: None,
        },
    }
}

fn with_offsets(data: PartitionData, offsets: PartitionOffsets, version: i16) -> PartitionData {
    let high_watermark = offsets.high_watermark.value();
    let data = data
        .with_high_watermark(high_watermark)
        .with_last_stable_offset(high_watermark);
    // The log start offset is in the answer from version 5.
    if version >= 5 {
        data.with_log_start_offset(offsets.log_start.value())
    } else {
        data
    }
}

fn response(
    request: &FetchRequest,
    version: i16,
    wanted: Vec<Wanted>,
    found: Vec<Found>,
) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = request
        .topics
        .iter()
        .map(|topic| {
            let response = FetchableTopicResponse::default();
            if version >= TOPIC_ID_VERSION {
                response.with_topic_id(topic.topic_id)
            } else {
                response.with_topic(topic.topic.clone())
            }
        })
        .collect();
    for (wanted, found) in wanted.into_iter().zip(found) {
        topics[wanted.topic].partitions.push(found.data);
    }
    FetchResponse::default().with_responses(topics)
}
