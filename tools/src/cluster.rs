//! `strand cluster status`: the nodes (live or fenced), the controller leader, and every
//! partition's chain (leader = head, epoch, replicas, in-sync replicas) with its committed
//! offset (the high watermark), as the broker at `--bootstrap` sees them. It asks with
//! Kafka's own requests (DescribeCluster v2 including fenced brokers, Metadata,
//! ListOffsets), like `rpk cluster info` and `rpk cluster health`.

use kafka_protocol::messages::DescribeClusterRequest;

use crate::admin_client::{AdminClient, error_text};
use crate::topic::{metadata, offsets};

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Nodes with their liveness, the controller leader, and the partitions' chains with
    /// their committed offsets. Exits 1 when a node is fenced or no controller is known.
    Status {
        /// Leave out the partitions.
        #[arg(long)]
        nodes_only: bool,
    },
}

pub fn run(bootstrap: &str, command: ClusterCommand) -> anyhow::Result<bool> {
    let ClusterCommand::Status { nodes_only } = command;
    let mut client = AdminClient::connect(bootstrap)?;
    let cluster = client.call(
        &DescribeClusterRequest::default().with_include_fenced_brokers(true),
        2,
    )?;
    if let Some(error) = error_text(cluster.error_code, cluster.error_message.as_ref()) {
        eprintln!("describing the cluster: {error}");
        return Ok(false);
    }
    let controller = cluster.controller_id.0;
    println!("CLUSTER     {}", cluster.cluster_id.as_str());
    if controller < 0 {
        println!("CONTROLLER  none known (no quorum?)");
    } else {
        println!("CONTROLLER  {controller}");
    }
    let mut brokers = cluster.brokers;
    brokers.sort_by_key(|broker| broker.broker_id.0);
    let fenced = brokers.iter().filter(|broker| broker.is_fenced).count();
    println!(
        "HEALTHY     {}",
        if fenced == 0 && controller >= 0 {
            "yes"
        } else {
            "no"
        }
    );
    println!("\nNODES\n=====");
    println!("{:<6} {:<32} STATE", "ID", "KAFKA ADDRESS");
    for broker in &brokers {
        let id = broker.broker_id.0;
        let mark = if id == controller { "*" } else { "" };
        println!(
            "{:<6} {:<32} {}",
            format!("{id}{mark}"),
            format!("{}:{}", broker.host.as_str(), broker.port),
            if broker.is_fenced { "fenced" } else { "live" }
        );
    }
    if !nodes_only {
        partitions(&mut client)?;
    }
    Ok(fenced == 0 && controller >= 0)
}

/// Each partition's chain, with the committed offset its head reports (a head knows the
/// committed offset first; other members learn it with the next message).
fn partitions(client: &mut AdminClient) -> anyhow::Result<()> {
    let response = metadata(client, None)?;
    let addresses: std::collections::HashMap<i32, String> = response
        .brokers
        .iter()
        .map(|broker| {
            let address = format!("{}:{}", broker.host.as_str(), broker.port);
            (broker.node_id.0, address)
        })
        .collect();
    let mut heads: std::collections::HashMap<i32, AdminClient> = std::collections::HashMap::new();
    let mut topics = response.topics;
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    println!("\nPARTITIONS\n==========");
    println!(
        "{:<32} {:>9} {:>6} {:>6} {:<16} {:<16} {:>16}",
        "TOPIC", "PARTITION", "HEAD", "EPOCH", "CHAIN", "IN-SYNC", "COMMITTED"
    );
    for topic in topics {
        let name = topic.name.as_ref().map_or("", |name| name.0.as_str());
        let mut partitions = topic.partitions;
        partitions.sort_by_key(|partition| partition.partition_index);
        let indexes: Vec<i32> = partitions.iter().map(|p| p.partition_index).collect();
        let committed = offsets(client, name, &indexes, -1)?;
        for (at, partition) in partitions.iter().enumerate() {
            let head = partition.leader_id.0;
            let from_head = addresses.get(&head).and_then(|address| {
                let client = match heads.entry(head) {
                    std::collections::hash_map::Entry::Occupied(held) => held.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(AdminClient::connect(address).ok()?)
                    }
                };
                offsets(client, name, &[partition.partition_index], -1).ok()
            });
            let committed = from_head.map_or(committed[at], |found| found[0]);
            let list = |nodes: &[kafka_protocol::messages::BrokerId]| {
                let ids: Vec<String> = nodes.iter().map(|id| id.0.to_string()).collect();
                format!("[{}]", ids.join(","))
            };
            println!(
                "{name:<32} {:>9} {:>6} {:>6} {:<16} {:<16} {:>16}",
                partition.partition_index,
                partition.leader_id.0,
                partition.leader_epoch,
                list(&partition.replica_nodes),
                list(&partition.isr_nodes),
                committed
            );
        }
    }
    Ok(())
}
