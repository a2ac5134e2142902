//! FindCoordinator: on a single node every group's coordinator is this broker.
//! Transactions are not served, so a transaction coordinator is never found.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::{Broker, wire};

/// Kafka's key types.
const GROUP: i8 = 0;

/// The first version that looks up many keys at once (KIP-699).
const BATCHED_VERSION: i16 = 4;

pub async fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> Option<FindCoordinatorResponse> {
    let config = &broker.config;
    let found = |key: StrBytes| {
        let coordinator = Coordinator::default().with_key(key);
        if request.key_type == GROUP {
            coordinator
                .with_node_id(BrokerId(config.node_id))
                .with_host(wire(config.advertised_host.clone()))
                .with_port(i32::from(config.advertised_port))
        } else {
            coordinator
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_error_message(Some(wire(format!(
                    "no coordinator for key type {}: transactions are not supported yet",
                    request.key_type
                ))))
        }
    };
    if version >= BATCHED_VERSION {
        let coordinators = request
            .coordinator_keys
            .iter()
            .cloned()
            .map(found)
            .collect();
        return Some(FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    let one = found(request.key.clone());
    let response = FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port);
    // Error messages are in the answer from version 1.
    Some(if version >= 1 {
        response.with_error_message(one.error_message)
    } else {
        response
    })
}
