//! Micro-benchmarks of the two checks every produced byte passes: the request decoder
//! (`strand_net::api::decode_frame`, header admission plus the body's decode) and the record
//! batch validator (`strand_engine::ValidatedBatch::new`: length, magic, CRC-32C, records).
//!
//! `cargo bench -p strand-bench --bench codec`.

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, FetchRequest, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use strand_bench::workloads::batch_of_size;
use strand_engine::ValidatedBatch;

const BATCH_SIZES: [(&str, usize); 2] = [("16KiB", 16 << 10), ("1MiB", 1 << 20)];

/// A request frame without its length prefix, as the listener hands it to the decoder.
fn frame<R: Encodable + HeaderVersion>(api: ApiKey, version: i16, request: &R) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench")));
    let mut out = BytesMut::new();
    header
        .encode(&mut out, R::header_version(version))
        .expect("header encodes");
    request.encode(&mut out, version).expect("request encodes");
    out.freeze()
}

fn produce_frame(batch: &[u8], partitions: i32) -> Bytes {
    let data = (0..partitions)
        .map(|index| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(Some(Bytes::copy_from_slice(batch)))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("bench")))
                .with_partition_data(data),
        ]);
    frame(ApiKey::Produce, 9, &request)
}

fn fetch_frame(partitions: i32) -> Bytes {
    let request = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("bench")))
                .with_partitions(
                    (0..partitions)
                        .map(|index| {
                            FetchPartition::default()
                                .with_partition(index)
                                .with_fetch_offset(1_000_000)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                ),
        ]);
    frame(ApiKey::Fetch, 12, &request)
}

fn decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, size) in BATCH_SIZES {
        let frame = produce_frame(&batch_of_size(size), 1);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(format!("produce_v9_one_{name}_batch"), |b| {
            b.iter(|| strand_net::api::decode_frame(frame.clone()).expect("decodes"));
        });
    }
    let frame = produce_frame(&batch_of_size(16 << 10), 64);
    group.throughput(Throughput::Elements(64));
    group.bench_function("produce_v9_64_partitions", |b| {
        b.iter(|| strand_net::api::decode_frame(frame.clone()).expect("decodes"));
    });
    let frame = fetch_frame(100);
    group.throughput(Throughput::Elements(100));
    group.bench_function("fetch_v12_100_partitions", |b| {
        b.iter(|| strand_net::api::decode_frame(frame.clone()).expect("decodes"));
    });
    group.finish();
}

fn validator(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    for (name, size) in BATCH_SIZES {
        let batch = batch_of_size(size);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(format!("batch_{name}"), |b| {
            b.iter_batched(
                || batch.clone(),
                |bytes| ValidatedBatch::new(bytes, 8 << 20).expect("valid"),
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    decoder(&mut criterion);
    validator(&mut criterion);
    criterion.final_summary();
}
