//! DescribeCluster: the nodes clients may use and the controller leader.
//!
//! A single node is its own controller. In a cluster the answer comes from this node's
//! copy of the controller's state: every registered node that is not fenced (and, from
//! v2 when asked, the fenced ones too, marked), and the leader this node knows of (-1
//! while none is known).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use crate::broker::{Broker, wire};

pub async fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    _version: i16,
) -> Option<DescribeClusterResponse> {
    let config = &broker.config;
    let mut response =
        DescribeClusterResponse::default().with_cluster_id(wire(config.cluster_id.clone()));
    if request.include_cluster_authorized_operations {
        response = response.with_cluster_authorized_operations(super::authorized::CLUSTER);
    }
    let Some(cluster) = &config.cluster else {
        let node = BrokerId(config.node_id);
        let this = DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(wire(config.advertised_host.clone()))
            .with_port(i32::from(config.advertised_port));
        return Some(response.with_controller_id(node).with_brokers(vec![this]));
    };
    let view = cluster.view();
    let brokers = view
        .state
        .nodes()
        .iter()
        .filter(|(_, record)| request.include_fenced_brokers || !record.fenced)
        .filter_map(|(node, record)| {
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(i32::try_from(node.value()).ok()?))
                    .with_host(wire(record.kafka.host.clone()))
                    .with_port(i32::from(record.kafka.port))
                    .with_is_fenced(record.fenced),
            )
        })
        .collect();
    let controller = view
        .leader
        .and_then(|leader| i32::try_from(leader.value()).ok())
        .unwrap_or(-1);
    Some(
        response
            .with_controller_id(BrokerId(controller))
            .with_brokers(brokers),
    )
}
