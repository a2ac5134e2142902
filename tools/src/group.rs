//! `strand group list|describe|delete|reset-offsets`: consumer groups, their members and,
//! per partition, the committed offset, the log end and the lag, like
//! kafka-consumer-groups.sh; resetting offsets lives in `group_reset.rs`.

use std::collections::BTreeMap;

use anyhow::bail;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DescribeGroupsRequest, GroupId, ListGroupsRequest,
    OffsetFetchRequest,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::admin_client::{AdminClient, error_text};
use crate::topic::offsets;

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// List consumer groups and their states.
    List,
    /// Show a group's members and, per partition, its committed offsets and lag.
    Describe { group: String },
    /// Delete groups with no members and their committed offsets.
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets (the group must have no members). Shows the plan
    /// and changes nothing unless --execute is given, like kafka-consumer-groups.sh.
    ResetOffsets(crate::group_reset::ResetArgs),
}

pub fn run(bootstrap: &str, command: GroupCommand) -> anyhow::Result<bool> {
    let mut client = AdminClient::connect(bootstrap)?;
    match command {
        GroupCommand::List => {
            let response = client.call(&ListGroupsRequest::default(), 4)?;
            if let Some(error) = error_text(response.error_code, None) {
                bail!("listing groups: {error}");
            }
            let mut groups = response.groups;
            groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
            println!("{:<40} STATE", "GROUP");
            for group in groups {
                println!(
                    "{:<40} {}",
                    group.group_id.0.as_str(),
                    group.group_state.as_str()
                );
            }
            Ok(true)
        }
        GroupCommand::Describe { group } => describe(&mut client, &group),
        GroupCommand::Delete { groups } => delete(&mut client, &groups),
        GroupCommand::ResetOffsets(args) => crate::group_reset::run(&mut client, &args),
    }
}

fn delete(client: &mut AdminClient, groups: &[String]) -> anyhow::Result<bool> {
    use kafka_protocol::messages::DeleteGroupsRequest;
    let request = DeleteGroupsRequest::default().with_groups_names(
        groups
            .iter()
            .map(|group| GroupId(StrBytes::from_string(group.clone())))
            .collect(),
    );
    let response = client.call(&request, 2)?;
    let mut ok = true;
    println!("{:<40} STATUS", "GROUP");
    for result in response.results {
        let status = error_text(result.error_code, None);
        ok &= status.is_none();
        println!(
            "{:<40} {}",
            result.group_id.0.as_str(),
            status.unwrap_or_else(|| "OK".into())
        );
    }
    Ok(ok)
}

fn describe(client: &mut AdminClient, group: &str) -> anyhow::Result<bool> {
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let response = client.call(&request, 4)?;
    let Some(described) = response.groups.into_iter().next() else {
        bail!("the broker did not describe {group}");
    };
    if let Some(error) = error_text(described.error_code, described.error_message.as_ref()) {
        eprintln!("{group}: {error}");
        return Ok(false);
    }
    if described.group_state.as_str() == "Dead" {
        eprintln!("{group}: no such group");
        return Ok(false);
    }
    // Who owns each partition, from the members' assignments (consumer protocol).
    let mut owners: BTreeMap<(String, i32), (String, String)> = BTreeMap::new();
    for member in &described.members {
        let mut bytes = member.member_assignment.clone();
        if bytes.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
        bytes = bytes.slice(2..);
        if let Ok(assignment) = ConsumerProtocolAssignment::decode(&mut bytes, version) {
            for topic in assignment.assigned_partitions {
                for partition in topic.partitions {
                    owners.insert(
                        (topic.topic.0.to_string(), partition),
                        (member.member_id.to_string(), member.client_id.to_string()),
                    );
                }
            }
        }
    }
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(None);
    let committed = client.call(&fetch, 6)?;
    let mut rows: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in committed.topics {
        for partition in topic.partitions {
            rows.insert(
                (topic.name.0.to_string(), partition.partition_index),
                partition.committed_offset,
            );
        }
    }
    for key in owners.keys() {
        rows.entry(key.clone()).or_insert(-1);
    }
    println!("GROUP        {group}");
    println!("STATE        {}", described.group_state.as_str());
    println!("MEMBERS      {}\n", described.members.len());
    println!(
        "{:<24} {:>9} {:>14} {:>14} {:>8}  {:<40} CLIENT-ID",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID"
    );
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in rows.keys() {
        by_topic.entry(topic.clone()).or_default().push(*partition);
    }
    for (topic, partitions) in by_topic {
        let ends = offsets(client, &topic, &partitions, -1)?;
        for (partition, end) in partitions.iter().zip(ends) {
            let key = (topic.clone(), *partition);
            let current = rows[&key];
            let lag = if current >= 0 && end >= 0 {
                (end - current).to_string()
            } else {
                "-".into()
            };
            let (member, client_id) = owners
                .get(&key)
                .cloned()
                .unwrap_or_else(|| ("-".into(), "-".into()));
            let shown = |offset: i64| {
                if offset < 0 {
                    "-".to_string()
                } else {
                    offset.to_string()
                }
            };
            println!(
                "{topic:<24} {partition:>9} {:>14} {:>14} {lag:>8}  {member:<40} {client_id}",
                shown(current),
                shown(end)
            );
        }
    }
    Ok(true)
}
