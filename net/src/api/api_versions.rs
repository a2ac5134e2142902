//! ApiVersions: the APIs and versions this broker serves, from the one version table.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::{Answer, SUPPORTED_APIS, encode_frame};
use crate::broker::Broker;

pub async fn handle(
    _broker: &Broker,
    _request: ApiVersionsRequest,
    _version: i16,
) -> Option<ApiVersionsResponse> {
    Some(response(0))
}

fn response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
        // -1 (no finalized features) is the default, so this tagged field is not sent:
        // librdkafka 2.0 mis-parses tagged fields that Kafka never sends.
        .with_finalized_features_epoch(-1)
}

/// Kafka's answer to an ApiVersions version it does not know: UNSUPPORTED_VERSION in a
/// version 0 response, listing what is served, so the client can retry with a version
/// both sides know.
pub fn unsupported(correlation_id: i32) -> Answer {
    let response = response(ResponseError::UnsupportedVersion.code());
    match encode_frame(correlation_id, 0, &response, 0) {
        Ok(bytes) => Answer::Respond(bytes),
        Err(error) => Answer::Close(format!("encoding ApiVersions: {error}")),
    }
}
