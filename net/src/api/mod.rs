//! The Kafka APIs: which versions are served, how a request frame is decoded and routed to
//! its handler, and how the answer is encoded.
//!
//! Each handler module takes a decoded request and returns the response body; this module
//! owns everything about headers and versions, so the version table that ApiVersions
//! advertises is the same table that admits requests.

mod alter_configs;
mod api_versions;
mod authorized;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_log_dirs;
mod describe_producers;
mod describe_topic_partitions;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod groups;
mod init_producer_id;
mod legacy;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod produce;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use std::time::Instant;

use crate::broker::Broker;
use crate::metrics::CountErrors;

/// What a connection does with a request once it has been handled.
#[derive(Debug)]
pub enum Answer {
    /// Write these bytes (a whole response frame).
    Respond(Bytes),
    /// Nothing goes back (a produce with acks=0).
    Silent,
    /// The request broke the protocol: close the connection, as Kafka does.
    Close(String),
}

/// The APIs served and the versions of each, as ApiVersions advertises them.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    // Produce v0–2 and Fetch v2–3: see legacy.rs.
    (ApiKey::Produce, 0, 12),
    (ApiKey::Fetch, 2, 16),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ElectLeaders, 0, 2),
];

/// The versions of `key` served, if any.
pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(api, _, _)| *api == key)
        .map(|&(_, min, max)| (min, max))
}

/// The fixed start of every request header: key, version, correlation id.
const HEADER_PREFIX_BYTES: usize = 8;

/// Decodes the request in `frame`, runs its handler, and encodes the answer.
pub async fn handle(broker: &Broker, mut frame: Bytes) -> Answer {
    let (api, header) = match admit(&mut frame) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let version = header.request_api_version;
    let started = Instant::now();
    let routed = route(broker, api, &header, frame).await;
    match api {
        ApiKey::Produce => broker
            .metrics
            .borrow_mut()
            .produce_latency
            .observe(started.elapsed()),
        ApiKey::Fetch => broker
            .metrics
            .borrow_mut()
            .fetch_latency
            .observe(started.elapsed()),
        _ => {}
    }
    match routed {
        Ok(answer) => answer,
        Err(error) => Answer::Close(format!("malformed {api:?} v{version} request: {error}")),
    }
}

/// Checks a frame's API key and version against the served table and decodes its header;
/// `frame` is left at the body. The refusal is Kafka's: a closed connection, or for an
/// unknown ApiVersions version an UNSUPPORTED_VERSION answer.
fn admit(frame: &mut Bytes) -> Result<(ApiKey, RequestHeader), Answer> {
    if frame.len() < HEADER_PREFIX_BYTES {
        return Err(Answer::Close(format!(
            "a request of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let mut prefix = &frame[..HEADER_PREFIX_BYTES];
    let (key, version, correlation_id) = (prefix.get_i16(), prefix.get_i16(), prefix.get_i32());
    let Ok(api) = ApiKey::try_from(key) else {
        return Err(Answer::Close(format!("unknown API key {key}")));
    };
    let served = supported_versions(api);
    if !served.is_some_and(|(min, max)| (min..=max).contains(&version)) {
        if api == ApiKey::ApiVersions {
            return Err(api_versions::unsupported(correlation_id));
        }
        return Err(Answer::Close(match served {
            Some((min, max)) => {
                format!("{api:?} version {version} is not served (versions {min} to {max} are)")
            }
            None => format!("{api:?} (API key {key}) is not served"),
        }));
    }
    match RequestHeader::decode(frame, api.request_header_version(version)) {
        Ok(header) => Ok((api, header)),
        Err(error) => Err(Answer::Close(format!(
            "malformed {api:?} request header: {error}"
        ))),
    }
}

/// Decodes a request frame (without its length prefix) exactly as the broker does, without
/// handling it: the fuzz target and the decoder's property test drive this. Returns the
/// API, or why the broker would refuse the frame.
pub fn decode_frame(mut frame: Bytes) -> Result<ApiKey, String> {
    let (api, header) = admit(&mut frame).map_err(|refusal| format!("{refusal:?}"))?;
    let version = header.request_api_version;
    match (api, version) {
        (ApiKey::Produce, 0..=2) => {
            let mut body = legacy::produce_v2_as_v3(&frame);
            return <kafka_protocol::messages::ProduceRequest as Decodable>::decode(&mut body, 3)
                .map(|_| api)
                .map_err(|error| format!("malformed Produce v{version} request: {error}"));
        }
        (ApiKey::Fetch, 2 | 3) => {
            return legacy::fetch_v2_v3(frame, version)
                .map(|_| api)
                .map_err(|error| format!("malformed Fetch v{version} request: {error}"));
        }
        _ => {}
    }
    let body = &mut frame;
    macro_rules! decode {
        ($($key:ident => $request:ty,)*) => {
            match api {
                $(ApiKey::$key => <$request as Decodable>::decode(body, version).map(drop),)*
                other => return Err(format!("{other:?} is not served")),
            }
        };
    }
    use kafka_protocol::messages::*;
    decode! {
        Produce => ProduceRequest,
        Fetch => FetchRequest,
        ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest,
        ApiVersions => ApiVersionsRequest,
        CreateTopics => CreateTopicsRequest,
        FindCoordinator => FindCoordinatorRequest,
        DeleteTopics => DeleteTopicsRequest,
        CreatePartitions => CreatePartitionsRequest,
        DescribeConfigs => DescribeConfigsRequest,
        AlterConfigs => AlterConfigsRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        DescribeCluster => DescribeClusterRequest,
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        InitProducerId => InitProducerIdRequest,
        JoinGroup => JoinGroupRequest,
        SyncGroup => SyncGroupRequest,
        Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest,
        OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest,
        ListGroups => ListGroupsRequest,
        DescribeGroups => DescribeGroupsRequest,
        DeleteGroups => DeleteGroupsRequest,
        OffsetDelete => OffsetDeleteRequest,
        DeleteRecords => DeleteRecordsRequest,
        DescribeProducers => DescribeProducersRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        ElectLeaders => ElectLeadersRequest,
    }
    .map_err(|error| format!("malformed {api:?} v{version} request: {error}"))?;
    Ok(api)
}

/// Decodes the body and runs the handler of `api`.
async fn route(
    broker: &Broker,
    api: ApiKey,
    header: &RequestHeader,
    mut body: Bytes,
) -> anyhow::Result<Answer> {
    let version = header.request_api_version;
    let body = &mut body;
    Ok(match (api, version) {
        (ApiKey::Produce, 0..=2) => {
            let request = Decodable::decode(&mut legacy::produce_v2_as_v3(body), 3)?;
            let response = produce::handle(broker, request, version).await;
            match response {
                // The v2 answer is laid out as v3's.
                Some(response) if version == 2 => respond_as(broker, api, header, &response, 3),
                Some(response) => {
                    let errors = response.errors();
                    broker.metrics.borrow_mut().request(api_name(api), errors);
                    let body = legacy::produce_response_v0_v1(&response, version)?;
                    Answer::Respond(plain_frame(header.correlation_id, &body)?)
                }
                None => Answer::Silent,
            }
        }
        (ApiKey::Fetch, 2 | 3) => {
            let body = legacy::fetch_v2_v3(body.clone(), version)?;
            broker.metrics.borrow_mut().request(api_name(api), 1);
            Answer::Respond(plain_frame(header.correlation_id, &body)?)
        }
        _ => route_current(broker, api, header, body).await?,
    })
}

async fn route_current(
    broker: &Broker,
    api: ApiKey,
    header: &RequestHeader,
    body: &mut Bytes,
) -> anyhow::Result<Answer> {
    let version = header.request_api_version;
    macro_rules! serve {
        ($handler:path) => {{
            let request = Decodable::decode(body, version)?;
            match $handler(broker, request, version).await {
                Some(response) => respond(broker, api, header, &response),
                None => Answer::Silent,
            }
        }};
    }
    Ok(match api {
        ApiKey::ApiVersions => serve!(api_versions::handle),
        ApiKey::Metadata => serve!(metadata::handle),
        ApiKey::Produce => serve!(produce::handle),
        ApiKey::Fetch => serve!(fetch::handle),
        ApiKey::ListOffsets => serve!(list_offsets::handle),
        ApiKey::CreateTopics => serve!(create_topics::handle),
        ApiKey::FindCoordinator => serve!(find_coordinator::handle),
        ApiKey::DeleteTopics => serve!(delete_topics::handle),
        ApiKey::CreatePartitions => serve!(create_partitions::handle),
        ApiKey::DescribeConfigs => serve!(describe_configs::handle),
        ApiKey::AlterConfigs => serve!(alter_configs::alter),
        ApiKey::IncrementalAlterConfigs => serve!(alter_configs::alter_incrementally),
        ApiKey::DescribeCluster => serve!(describe_cluster::handle),
        ApiKey::OffsetForLeaderEpoch => serve!(offset_for_leader_epoch::handle),
        ApiKey::InitProducerId => serve!(init_producer_id::handle),
        ApiKey::JoinGroup => {
            let request = Decodable::decode(body, version)?;
            let client_id = header
                .client_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            match groups::join(broker, request, version, client_id).await {
                Some(response) => respond(broker, api, header, &response),
                None => Answer::Silent,
            }
        }
        ApiKey::SyncGroup => serve!(groups::sync),
        ApiKey::Heartbeat => serve!(groups::heartbeat),
        ApiKey::LeaveGroup => serve!(groups::leave),
        ApiKey::OffsetCommit => serve!(groups::commit),
        ApiKey::OffsetFetch => serve!(groups::fetch),
        ApiKey::ListGroups => serve!(groups::list),
        ApiKey::DescribeGroups => serve!(groups::describe),
        ApiKey::DeleteGroups => serve!(groups::delete),
        ApiKey::OffsetDelete => serve!(groups::delete_offsets),
        ApiKey::DeleteRecords => serve!(delete_records::handle),
        ApiKey::DescribeProducers => serve!(describe_producers::handle),
        ApiKey::DescribeLogDirs => serve!(describe_log_dirs::handle),
        ApiKey::DescribeTopicPartitions => serve!(describe_topic_partitions::handle),
        ApiKey::ElectLeaders => serve!(elect_leaders::handle),
        other => Answer::Close(format!("{other:?} is not served")),
    })
}

/// The answer carrying `response`, or a closed connection if it cannot be encoded (a bug:
/// logged as an error).
fn respond<R: Encodable + HeaderVersion + CountErrors>(
    broker: &Broker,
    api: ApiKey,
    header: &RequestHeader,
    response: &R,
) -> Answer {
    respond_as(broker, api, header, response, header.request_api_version)
}

/// [`respond`], with the body laid out as `version` (an older version shares a newer one's
/// layout).
fn respond_as<R: Encodable + HeaderVersion + CountErrors>(
    broker: &Broker,
    api: ApiKey,
    header: &RequestHeader,
    response: &R,
    version: i16,
) -> Answer {
    broker
        .metrics
        .borrow_mut()
        .request(api_name(api), response.errors());
    let encoded = encode_frame(
        header.correlation_id,
        R::header_version(header.request_api_version),
        response,
        version,
    );
    match encoded {
        Ok(bytes) => Answer::Respond(bytes),
        Err(error) => {
            tracing::error!(api = ?api, version, %error, "cannot encode a response");
            Answer::Close(format!("encoding the {api:?} v{version} response: {error}"))
        }
    }
}

/// A response frame with a version 0 header around an encoded `body`.
fn plain_frame(correlation_id: i32, body: &[u8]) -> anyhow::Result<Bytes> {
    let mut frame = BytesMut::with_capacity(8 + body.len());
    frame.put_i32(i32::try_from(4 + body.len())?);
    frame.put_i32(correlation_id);
    frame.extend_from_slice(body);
    Ok(frame.freeze())
}

/// A whole response frame: length, header, body.
fn encode_frame<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    response: &R,
    version: i16,
) -> anyhow::Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let len = header.compute_size(header_version)? + response.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + len);
    buf.extend_from_slice(&i32::try_from(len)?.to_be_bytes());
    header.encode(&mut buf, header_version)?;
    response.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Kafka's name for a served API, for metrics.
fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::DescribeProducers => "DescribeProducers",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::DescribeTopicPartitions => "DescribeTopicPartitions",
        ApiKey::ElectLeaders => "ElectLeaders",
        _ => "Other",
    }
}
