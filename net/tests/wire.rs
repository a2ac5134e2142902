//! APIs no client library in the test suite calls, spoken as raw frames.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;

use bytes::Buf;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeClusterRequest,
    DescribeClusterResponse,
};
use kafka_protocol::protocol::Decodable;
use support::{connect, frame, limits, read_response, start};

#[test]
fn describe_cluster_names_this_node_as_broker_and_controller() {
    let listener = start(limits());
    let mut stream = connect(&listener);
    stream
        .write_all(&frame(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default(),
        ))
        .unwrap();
    let mut response = bytes::Bytes::from(read_response(&mut stream).unwrap());
    assert_eq!(response.get_i32(), 7);
    // DescribeCluster answers with a flexible header: skip its empty tagged fields.
    assert_eq!(response.get_u8(), 0);
    let cluster = DescribeClusterResponse::decode(&mut response, 1).unwrap();
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.controller_id.0, 0);
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].port, i32::from(listener.address.port()));
}

#[test]
fn api_versions_lists_each_served_api_once_with_a_valid_range() {
    let listener = start(limits());
    let mut stream = connect(&listener);
    stream
        .write_all(&frame(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default(),
        ))
        .unwrap();
    let mut response = bytes::Bytes::from(read_response(&mut stream).unwrap());
    assert_eq!(response.get_i32(), 7);
    let versions = ApiVersionsResponse::decode(&mut response, 3).unwrap();
    let mut keys: Vec<i16> = versions.api_keys.iter().map(|api| api.api_key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(
        keys.len(),
        versions.api_keys.len(),
        "an API is listed twice"
    );
    for api in &versions.api_keys {
        let key = ApiKey::try_from(api.api_key).unwrap();
        let known = key.valid_versions();
        assert!(api.min_version <= api.max_version, "{key:?}");
        // Produce v0–2 and Fetch v2–3 are decoded by hand (net/src/api/legacy.rs).
        let legacy_min = match key {
            ApiKey::Produce => 0,
            ApiKey::Fetch => 2,
            _ => known.min,
        };
        assert!(
            legacy_min <= api.min_version && api.max_version <= known.max,
            "{key:?} advertises versions the protocol crate cannot decode"
        );
    }
}

#[test]
fn alter_configs_refuses_an_invalid_value_and_keeps_the_old_one() {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{
        AlterConfigsRequest, AlterConfigsResponse, CreateTopicsRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    let listener = start(limits());
    let mut stream = connect(&listener);
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("configured")))
        .with_num_partitions(1)
        .with_replication_factor(1);
    let create = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(5000);
    stream
        .write_all(&frame(ApiKey::CreateTopics, 4, &create))
        .unwrap();
    assert!(read_response(&mut stream).is_some());
    let alter = AlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("configured"))
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.bytes"))
                    .with_value(Some(StrBytes::from_static_str("lots"))),
            ]),
    ]);
    stream
        .write_all(&frame(ApiKey::AlterConfigs, 1, &alter))
        .unwrap();
    let mut response = bytes::Bytes::from(read_response(&mut stream).unwrap());
    assert_eq!(response.get_i32(), 7);
    let altered = AlterConfigsResponse::decode(&mut response, 1).unwrap();
    assert_eq!(altered.responses[0].error_code, 40, "INVALID_CONFIG");
}

#[test]
fn offset_for_leader_epoch_ends_epoch_0_at_the_high_watermark() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        MetadataRequest, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
        metadata_request::MetadataRequestTopic,
    };
    use kafka_protocol::protocol::StrBytes;

    let listener = start(limits());
    let mut stream = connect(&listener);
    // Metadata creates the topic (auto-creation is on).
    let name = TopicName(StrBytes::from_static_str("epochs"));
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name.clone())),
        ]))
        .with_allow_auto_topic_creation(true);
    stream
        .write_all(&frame(ApiKey::Metadata, 9, &metadata))
        .unwrap();
    assert!(read_response(&mut stream).is_some());
    let partition = |current: i32, epoch: i32| {
        OffsetForLeaderPartition::default()
            .with_partition(0)
            .with_current_leader_epoch(current)
            .with_leader_epoch(epoch)
    };
    let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
        OffsetForLeaderTopic::default()
            .with_topic(name)
            .with_partitions(vec![partition(0, 0), partition(-1, 3), partition(5, 0)]),
    ]);
    stream
        .write_all(&frame(ApiKey::OffsetForLeaderEpoch, 3, &request))
        .unwrap();
    let mut response = bytes::Bytes::from(read_response(&mut stream).unwrap());
    assert_eq!(response.get_i32(), 7);
    let answer = OffsetForLeaderEpochResponse::decode(&mut response, 3).unwrap();
    let partitions = &answer.topics[0].partitions;
    assert_eq!(
        (partitions[0].error_code, partitions[0].leader_epoch),
        (0, 0)
    );
    assert_eq!(partitions[0].end_offset, 0);
    assert_eq!(
        (partitions[1].leader_epoch, partitions[1].end_offset),
        (0, 0)
    );
    assert_eq!(partitions[2].error_code, 75, "UNKNOWN_LEADER_EPOCH");
}

/// A Produce v0 request (the v2 layout without a transactional id) for partition 0.
fn produce_v0(topic: &str, records: &[u8]) -> Vec<u8> {
    use bytes::BufMut;
    let mut body = Vec::new();
    body.put_i16(1); // acks
    body.put_i32(5000);
    body.put_i32(1);
    body.put_i16(i16::try_from(topic.len()).unwrap());
    body.put_slice(topic.as_bytes());
    body.put_i32(1);
    body.put_i32(0);
    body.put_i32(i32::try_from(records.len()).unwrap());
    body.put_slice(records);
    let mut request = Vec::new();
    request.put_i16(0); // Produce
    request.put_i16(0); // version 0
    request.put_i32(7);
    request.put_i16(-1); // no client id
    request.put_slice(&body);
    let mut framed = u32::try_from(request.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(&request);
    framed
}

#[test]
fn produce_v0_stores_v2_batches_and_refuses_old_message_formats() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let listener = start(limits());
    let mut stream = connect(&listener);
    // Metadata creates the topic, as clients ask for it before producing.
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("legacy")))),
    ]));
    stream
        .write_all(&frame(ApiKey::Metadata, 1, &metadata))
        .unwrap();
    assert!(read_response(&mut stream).is_some());
    let mut builder = strand_engine::batch_builder::BatchBuilder::new(1_700_000_000_000);
    builder.record(Some(b"k"), Some(b"v"), &[]);
    builder.record(Some(b"k"), Some(b"w"), &[]);
    for (records, expected_error, expected_offset) in [
        (builder.build(), 0, 0),
        (builder.build(), 0, 2),
        // A magic 1 message: offset, size, crc, magic 1, attributes, timestamp, key, value.
        (
            vec![
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 22, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255,
                255, 255, 255, 0, 0, 0, 0,
            ],
            43,
            -1,
        ),
    ] {
        stream.write_all(&produce_v0("legacy", &records)).unwrap();
        let mut response = bytes::Bytes::from(read_response(&mut stream).unwrap());
        assert_eq!(response.get_i32(), 7);
        assert_eq!(response.get_i32(), 1); // topics
        let name_len = usize::try_from(response.get_i16()).unwrap();
        response.advance(name_len);
        assert_eq!(response.get_i32(), 1); // partitions
        assert_eq!(response.get_i32(), 0);
        assert_eq!(response.get_i16(), expected_error);
        assert_eq!(response.get_i64(), expected_offset);
        assert!(response.is_empty(), "v0 has no throttle time");
    }
}
