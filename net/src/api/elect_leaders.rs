//! ElectLeaders, where it has meaning in a chain: a partition's leader is its chain's head,
//! which the controller moves only when the head's node fails, so there is never a
//! leader to elect by hand. A preferred election (type 0) answers ELECTION_NOT_NEEDED
//! when the head is the first replica, and PREFERRED_LEADER_NOT_AVAILABLE otherwise (the
//! controller keeps the order it placed); an unclean election (type 1) answers
//! ELECTION_NOT_NEEDED while the partition has a head and ELIGIBLE_LEADERS_NOT_AVAILABLE
//! while it has none (the controller elects one as soon as a replica's node is back).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use crate::broker::{Broker, topic_name, wire};

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub async fn handle(
    broker: &Broker,
    request: ElectLeadersRequest,
    version: i16,
) -> Option<ElectLeadersResponse> {
    if !matches!(request.election_type, PREFERRED | UNCLEAN) {
        let response =
            ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        return Some(response);
    }
    // Null asks for every partition.
    let wanted: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .map(|topic| (topic.topic.0.to_string(), topic.partitions))
            .collect(),
        None => broker
            .router
            .metadata()
            .topics()
            .map(|topic| {
                let count = i32::try_from(topic.partition_count()).unwrap_or(i32::MAX);
                (topic.name.clone(), (0..count).collect())
            })
            .collect(),
    };
    let view = broker.config.cluster.as_ref().map(|cluster| cluster.view());
    let results = wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let meta = broker.topic(&topic);
            let results = partitions
                .into_iter()
                .map(|index| {
                    let (code, message) = match (&meta, u32::try_from(index)) {
                        (Some(meta), Ok(at)) if at < meta.partition_count() => {
                            let (seen, _) = super::metadata::partition_seen(
                                broker,
                                view.as_deref(),
                                &topic,
                                at,
                            );
                            outcome(request.election_type, seen.leader, &seen.replicas)
                        }
                        _ => (
                            ResponseError::UnknownTopicOrPartition,
                            format!("unknown topic or partition {topic}-{index}"),
                        ),
                    };
                    PartitionResult::default()
                        .with_partition_id(index)
                        .with_error_code(code.code())
                        .with_error_message(Some(wire(message)))
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(topic_name(&topic))
                .with_partition_result(results)
        })
        .collect();
    let response = ElectLeadersResponse::default().with_replica_election_results(results);
    let _ = version;
    Some(response)
}

fn outcome(election: i8, leader: i32, replicas: &[i32]) -> (ResponseError, String) {
    match (election, leader) {
        (_, leader) if leader < 0 && election == UNCLEAN => (
            ResponseError::EligibleLeadersNotAvailable,
            "the chain has no head yet; the controller elects one when a replica's node is back"
                .into(),
        ),
        (PREFERRED, leader) if replicas.first() == Some(&leader) => (
            ResponseError::ElectionNotNeeded,
            format!("node {leader}, the preferred replica, already leads"),
        ),
        (PREFERRED, leader) => (
            ResponseError::PreferredLeaderNotAvailable,
            format!("node {leader} heads the chain; a chain's head moves only when its node fails"),
        ),
        (_, leader) => (
            ResponseError::ElectionNotNeeded,
            format!("node {leader} leads"),
        ),
    }
}
