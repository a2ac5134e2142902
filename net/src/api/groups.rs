//! The consumer group APIs: each request goes to the coordinator of its group (see
//! `groups::route`) and its answer comes back; ListGroups asks every coordinator.

use std::time::Duration;

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
    delete_groups_response, offset_delete_response,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::{Broker, wire};
use crate::groups::coordinator::{GroupCall, GroupView};
use crate::groups::group::Join;
use crate::groups::offsets::{Committed, METADATA_BYTES_MAX};
use crate::groups::route;

/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms` (the minimum
/// lowered so tests and tools can use short sessions).
const SESSION_TIMEOUT_MIN_MS: i32 = 1000;
const SESSION_TIMEOUT_MAX_MS: i32 = 1_800_000;

/// Sends `call` (made with its reply sender) to `group`'s coordinator and awaits the answer;
/// the error code when this node cannot coordinate the group (in a cluster: it is not the
/// head of the group's `__consumer_offsets` partition, or has not committed as head yet).
async fn ask<T>(
    broker: &Broker,
    group: &str,
    call: impl FnOnce(oneshot::Sender<T>) -> GroupCall,
) -> Result<T, ResponseError> {
    broker.ensure_offsets_topic().await;
    crate::groups::coordinates(broker, group)?;
    let (reply, answer) = oneshot::channel();
    if !broker
        .coordinators
        .send(route(broker, group), call(reply))
        .await
    {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    answer
        .await
        .map_err(|_| ResponseError::CoordinatorNotAvailable)
}

fn invalid_group(group: &str) -> Option<ResponseError> {
    group.is_empty().then_some(ResponseError::InvalidGroupId)
}

pub async fn join(
    broker: &Broker,
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
) -> Option<JoinGroupResponse> {
    let group = request.group_id.0.to_string();
    let session = request.session_timeout_ms;
    let refused = invalid_group(&group).or_else(|| {
        (!(SESSION_TIMEOUT_MIN_MS..=SESSION_TIMEOUT_MAX_MS).contains(&session))
            .then_some(ResponseError::InvalidSessionTimeout)
    });
    let mut response = match refused {
        Some(code) => JoinGroupResponse::default()
            .with_error_code(code.code())
            .with_generation_id(-1),
        None => {
            let rebalance = if version >= 1 {
                request.rebalance_timeout_ms
            } else {
                session
            };
            let millis = |ms: i32| Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0));
            let (reply, answer) = oneshot::channel();
            let join = Join {
                member_id: request.member_id.to_string(),
                group_instance_id: request.group_instance_id.as_ref().map(ToString::to_string),
                client_id,
                client_host: String::new(),
                session_timeout: millis(session),
                rebalance_timeout: millis(rebalance),
                protocol_type: request.protocol_type.to_string(),
                protocols: request
                    .protocols
                    .iter()
                    .map(|protocol| (protocol.name.to_string(), protocol.metadata.clone()))
                    .collect(),
                reply,
            };
            let call = GroupCall::Join {
                group: group.clone(),
                join,
                require_known_id: version >= 4,
            };
            broker.ensure_offsets_topic().await;
            let sent = match crate::groups::coordinates(broker, &group) {
                Ok(()) => broker.coordinators.send(route(broker, &group), call).await,
                Err(code) => {
                    drop(call);
                    return Some(
                        JoinGroupResponse::default()
                            .with_error_code(code.code())
                            .with_generation_id(-1),
                    );
                }
            };
            match (sent, answer.await) {
                (true, Ok(response)) => response,
                _ => JoinGroupResponse::default()
                    .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                    .with_generation_id(-1),
            }
        }
    };
    // Protocol type and nullable names are in the answer from version 7.
    if version < 7 {
        response.protocol_type = None;
        response.protocol_name = Some(response.protocol_name.unwrap_or_default());
    }
    if version < 5 {
        for member in &mut response.members {
            member.group_instance_id = None;
        }
    }
    Some(response)
}

pub async fn sync(
    broker: &Broker,
    request: SyncGroupRequest,
    version: i16,
) -> Option<SyncGroupResponse> {
    let group = request.group_id.0.to_string();
    let assignments: Vec<(String, Bytes)> = request
        .assignments
        .iter()
        .map(|assignment| {
            (
                assignment.member_id.to_string(),
                assignment.assignment.clone(),
            )
        })
        .collect();
    let answer = match invalid_group(&group) {
        Some(code) => None.ok_or(code),
        None => {
            ask(broker, &group, |reply| GroupCall::Sync {
                group: group.clone(),
                member_id: request.member_id.to_string(),
                generation: request.generation_id,
                assignments,
                reply,
            })
            .await
        }
    };
    let mut response =
        answer.unwrap_or_else(|code| SyncGroupResponse::default().with_error_code(code.code()));
    // Protocol type and name are in the answer from version 5.
    if version < 5 {
        response.protocol_type = None;
        response.protocol_name = None;
    }
    Some(response)
}

pub async fn heartbeat(
    broker: &Broker,
    request: HeartbeatRequest,
    _version: i16,
) -> Option<HeartbeatResponse> {
    let group = request.group_id.0.to_string();
    let answer = ask(broker, &group, |reply| GroupCall::Heartbeat {
        group: group.clone(),
        member_id: request.member_id.to_string(),
        generation: request.generation_id,
        reply,
    })
    .await
    .and_then(|answer| answer);
    let code = answer.err().map_or(0, |code| code.code());
    Some(HeartbeatResponse::default().with_error_code(code))
}

pub async fn leave(
    broker: &Broker,
    request: LeaveGroupRequest,
    version: i16,
) -> Option<LeaveGroupResponse> {
    let group = request.group_id.0.to_string();
    // Version 3 (KIP-345) leaves many members at once, by id or group instance id.
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|member| {
                let instance = member.group_instance_id.as_ref().map(ToString::to_string);
                (member.member_id.to_string(), instance)
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let count = members.len();
    let answers = ask(broker, &group, |reply| GroupCall::Leave {
        group: group.clone(),
        members: members.clone(),
        reply,
    })
    .await
    .unwrap_or_else(|code| vec![Err(code); count]);
    let code = |answer: &Result<(), ResponseError>| answer.err().map_or(0, |code| code.code());
    if version < 3 {
        return Some(
            LeaveGroupResponse::default().with_error_code(answers.first().map_or(0, code)),
        );
    }
    let responses = members
        .into_iter()
        .zip(&answers)
        .map(|((id, instance), answer)| {
            MemberResponse::default()
                .with_member_id(wire(id))
                .with_group_instance_id(instance.map(wire))
                .with_error_code(code(answer))
        })
        .collect();
    Some(LeaveGroupResponse::default().with_members(responses))
}

pub async fn commit(
    broker: &Broker,
    request: OffsetCommitRequest,
    version: i16,
) -> Option<OffsetCommitResponse> {
    let group = request.group_id.0.to_string();
    let mut offsets = Vec::new();
    let mut too_large = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let metadata = partition
                .committed_metadata
                .as_ref()
                .map(ToString::to_string);
            if metadata
                .as_ref()
                .is_some_and(|m| m.len() > METADATA_BYTES_MAX)
            {
                too_large.push((topic.name.0.to_string(), partition.partition_index));
                continue;
            }
            let committed = Committed {
                offset: partition.committed_offset,
                leader_epoch: if version >= 6 {
                    partition.committed_leader_epoch
                } else {
                    -1
                },
                metadata,
            };
            offsets.push((
                topic.name.0.to_string(),
                partition.partition_index,
                committed,
            ));
        }
    }
    let answer = match invalid_group(&group) {
        Some(code) => Err(code),
        None if offsets.is_empty() => Ok(()),
        None => ask(broker, &group, |reply| GroupCall::Commit {
            group: group.clone(),
            member_id: request.member_id.to_string(),
            generation: request.generation_id_or_member_epoch,
            offsets,
            reply,
        })
        .await
        .and_then(|answer| answer),
    };
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let key = (topic.name.0.to_string(), partition.partition_index);
                    let code = if too_large.contains(&key) {
                        ResponseError::OffsetMetadataTooLarge.code()
                    } else {
                        answer.err().map_or(0, |code| code.code())
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    Some(OffsetCommitResponse::default().with_topics(topics))
}

pub async fn fetch(
    broker: &Broker,
    request: OffsetFetchRequest,
    version: i16,
) -> Option<OffsetFetchResponse> {
    let group = request.group_id.0.to_string();
    let wanted = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partition_indexes
                    .iter()
                    .map(|partition| (topic.name.0.to_string(), *partition))
            })
            .collect::<Vec<_>>()
    });
    let found = ask(broker, &group, |reply| GroupCall::Fetch {
        group: group.clone(),
        wanted,
        reply,
    })
    .await;
    let found = match found {
        Ok(found) => found,
        Err(code) => {
            let code = code.code();
            return Some(if version >= 2 {
                OffsetFetchResponse::default().with_error_code(code)
            } else {
                OffsetFetchResponse::default()
            });
        }
    };
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for (topic, partition, committed) in found {
        let entry = OffsetFetchResponsePartition::default().with_partition_index(partition);
        let entry = match committed {
            Some(committed) => {
                let entry = entry
                    .with_committed_offset(committed.offset)
                    .with_metadata(Some(wire(committed.metadata.unwrap_or_default())));
                // Leader epochs are in the answer from version 5.
                if version >= 5 {
                    entry.with_committed_leader_epoch(committed.leader_epoch)
                } else {
                    entry
                }
            }
            None => entry
                .with_committed_offset(-1)
                .with_metadata(Some(StrBytes::default())),
        };
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(existing) => existing.partitions.push(entry),
            None => topics.push(
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(wire(topic)))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    Some(OffsetFetchResponse::default().with_topics(topics))
}

/// Every group of every coordinator.
async fn all_groups(broker: &Broker) -> Vec<(String, GroupView)> {
    let mut all = Vec::new();
    for shard in 0..broker.coordinators.shard_count() {
        let (reply, answer) = oneshot::channel();
        if broker
            .coordinators
            .send(shard, GroupCall::List { reply })
            .await
            && let Ok(groups) = answer.await
        {
            all.extend(groups);
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

pub async fn list(
    broker: &Broker,
    request: ListGroupsRequest,
    version: i16,
) -> Option<ListGroupsResponse> {
    let groups = all_groups(broker)
        .await
        .into_iter()
        .filter(|(_, view)| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|state| state.as_str().eq_ignore_ascii_case(view.state))
        })
        .map(|(id, view)| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(wire(id)))
                .with_protocol_type(wire(view.protocol_type));
            // Group states are in the answer from version 4.
            if version >= 4 {
                listed.with_group_state(wire(view.state))
            } else {
                listed
            }
        })
        .collect();
    Some(ListGroupsResponse::default().with_groups(groups))
}

pub async fn describe(
    broker: &Broker,
    request: DescribeGroupsRequest,
    version: i16,
) -> Option<DescribeGroupsResponse> {
    let mut described = Vec::with_capacity(request.groups.len());
    for group in &request.groups {
        let id = group.0.to_string();
        let view = ask(broker, &id, |reply| GroupCall::Describe {
            group: id.clone(),
            reply,
        })
        .await;
        let mut entry = DescribedGroup::default().with_group_id(group.clone());
        // Asked for from version 3.
        if version >= 3 && request.include_authorized_operations {
            entry = entry.with_authorized_operations(super::authorized::GROUP);
        }
        described.push(match view {
            Err(code) => entry.with_error_code(code.code()),
            Ok(None) => entry.with_group_state(wire("Dead")),
            Ok(Some(view)) => {
                let members = view
                    .members
                    .into_iter()
                    .map(|member| {
                        let described = DescribedGroupMember::default()
                            .with_member_id(wire(member.id))
                            .with_client_id(wire(member.client_id))
                            .with_client_host(wire(member.client_host))
                            .with_member_metadata(member.metadata)
                            .with_member_assignment(member.assignment);
                        // Group instance ids are in the answer from version 4.
                        if version >= 4 {
                            described.with_group_instance_id(member.group_instance_id.map(wire))
                        } else {
                            described
                        }
                    })
                    .collect();
                entry
                    .with_group_state(wire(view.state))
                    .with_protocol_type(wire(view.protocol_type))
                    .with_protocol_data(wire(view.protocol))
                    .with_members(members)
            }
        });
    }
    Some(DescribeGroupsResponse::default().with_groups(described))
}

pub async fn delete(
    broker: &Broker,
    request: DeleteGroupsRequest,
    _version: i16,
) -> Option<DeleteGroupsResponse> {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group in &request.groups_names {
        let id = group.0.to_string();
        let answer = ask(broker, &id, |reply| GroupCall::Delete {
            group: id.clone(),
            reply,
        })
        .await
        .and_then(|answer| answer);
        results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(group.clone())
                .with_error_code(answer.err().map_or(0, |code| code.code())),
        );
    }
    Some(DeleteGroupsResponse::default().with_results(results))
}

/// OffsetDelete: removes a group's committed offsets of some partitions (tombstones in
/// `__consumer_offsets`), refused per partition while a live member subscribes to its
/// topic.
pub async fn delete_offsets(
    broker: &Broker,
    request: OffsetDeleteRequest,
    _version: i16,
) -> Option<OffsetDeleteResponse> {
    let id = request.group_id.0.to_string();
    let wanted: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.0.to_string(), partition.partition_index))
        })
        .collect();
    let answer = if let Some(code) = invalid_group(&id) {
        Err(code)
    } else {
        ask(broker, &id, |reply| GroupCall::DeleteOffsets {
            group: id.clone(),
            partitions: wanted.clone(),
            reply,
        })
        .await
        .and_then(|answer| answer)
    };
    let answers = match answer {
        Ok(answers) => answers,
        Err(code) => {
            return Some(OffsetDeleteResponse::default().with_error_code(code.code()));
        }
    };
    let mut answers = answers.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let code = answers
                        .next()
                        .and_then(Result::err)
                        .map_or(0, |code| code.code());
                    offset_delete_response::OffsetDeleteResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code)
                })
                .collect();
            offset_delete_response::OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    Some(OffsetDeleteResponse::default().with_topics(topics))
}
