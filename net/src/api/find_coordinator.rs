//! FindCoordinator: on a single node every group's coordinator is this broker; in a
//! cluster it is the head of the group's `__consumer_offsets` partition. Transactions are
//! not served, so a transaction coordinator is never found.

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
    if config.cluster.is_some() && request.key_type == GROUP {
        broker.ensure_offsets_topic().await;
    }
    let found = |key: StrBytes| {
        let coordinator = Coordinator::default().with_key(key.clone());
        if request.key_type == GROUP {
            let Some(cluster) = &config.cluster else {
                return coordinator
                    .with_node_id(BrokerId(config.node_id))
                    .with_host(wire(config.advertised_host.clone()))
                    .with_port(i32::from(config.advertised_port));
            };
            match head_of_group(cluster, config.offsets_partitions, &key) {
                Some((node, host, port)) => coordinator
                    .with_node_id(BrokerId(node))
                    .with_host(wire(host))
                    .with_port(i32::from(port)),
                None => coordinator
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                    .with_error_message(Some(wire(format!(
                        "group {key}: its offsets partition has no reachable head yet"
                    )))),
            }
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

/// The node heading group `group`'s partition of `__consumer_offsets`, with its Kafka
/// address, if that node is reachable from here.
fn head_of_group(
    cluster: &strand_replication::host::ControllerHandle,
    partitions: u32,
    group: &str,
) -> Option<(i32, String, u16)> {
    let partition = crate::groups::offsets::partition_for(group, partitions);
    let view = cluster.view();
    let seen = crate::cluster::partition(&view, crate::groups::offsets::OFFSETS_TOPIC, partition)?;
    let node = u32::try_from(seen.leader).ok()?;
    let record = view
        .state
        .nodes()
        .get(&strand_replication::NodeId::new(node))
        .filter(|record| !record.fenced)?;
    Some((seen.leader, record.kafka.host.clone(), record.kafka.port))
}
