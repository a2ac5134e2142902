//! DescribeCluster: this node, which is also the controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use crate::broker::{Broker, wire};

pub async fn handle(
    broker: &Broker,
    _request: DescribeClusterRequest,
    _version: i16,
) -> Option<DescribeClusterResponse> {
    let config = &broker.config;
    let node = BrokerId(config.node_id);
    let this = DescribeClusterBroker::default()
        .with_broker_id(node)
        .with_host(wire(config.advertised_host.clone()))
        .with_port(i32::from(config.advertised_port));
    Some(
        DescribeClusterResponse::default()
            .with_cluster_id(wire(config.cluster_id.clone()))
            .with_controller_id(node)
            .with_brokers(vec![this]),
    )
}
