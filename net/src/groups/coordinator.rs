//! The group coordinator of one shard: it owns the groups whose `__consumer_offsets`
//! partition lives on this shard. Calls come over a bounded channel from whichever shard
//! took the client's request; group state is touched only here, and committed offsets are
//! written to the partition (durably) before they count.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::SyncGroupResponse;
use strand_engine::Offset;

use super::group::{Group, Join, State};
use super::offsets::{self, Committed, GroupOffsets, OFFSETS_TOPIC};
use crate::broker::Broker;

/// Calls waiting per coordinator.
const CALLS_QUEUED_MAX: usize = 1024;
/// How often members' sessions and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(100);
/// Bytes read at a time while loading committed offsets.
const LOAD_READ_BYTES: usize = 1 << 20;

/// A group as DescribeGroups and ListGroups show it.
#[derive(Clone, Debug, Default)]
pub struct GroupView {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

#[derive(Clone, Debug)]
pub struct MemberView {
    pub id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// Work for a coordinator.
#[derive(Debug)]
pub enum GroupCall {
    Join {
        group: String,
        join: Join,
        require_known_id: bool,
    },
    Sync {
        group: String,
        member_id: String,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        reply: oneshot::Sender<SyncGroupResponse>,
    },
    Heartbeat {
        group: String,
        member_id: String,
        generation: i32,
        reply: oneshot::Sender<Result<(), ResponseError>>,
    },
    /// Members by id or by group instance id.
    Leave {
        group: String,
        members: Vec<(String, Option<String>)>,
        reply: oneshot::Sender<Vec<Result<(), ResponseError>>>,
    },
    Commit {
        group: String,
        member_id: String,
        generation: i32,
        offsets: Vec<(String, i32, Committed)>,
        reply: oneshot::Sender<Result<(), ResponseError>>,
    },
    /// `None` asks for every committed offset of the group.
    Fetch {
        group: String,
        wanted: Option<Vec<(String, i32)>>,
        reply: oneshot::Sender<Vec<(String, i32, Option<Committed>)>>,
    },
    List {
        reply: oneshot::Sender<Vec<(String, GroupView)>>,
    },
    Describe {
        group: String,
        reply: oneshot::Sender<Option<GroupView>>,
    },
    Delete {
        group: String,
        reply: oneshot::Sender<Result<(), ResponseError>>,
    },
    /// Kafka's OffsetDelete: the group's committed offsets of `partitions`, each answered
    /// (GROUP_SUBSCRIBED_TO_TOPIC while a member of the live group subscribes to it); the
    /// whole call fails with GROUP_ID_NOT_FOUND.
    DeleteOffsets {
        group: String,
        partitions: Vec<(String, i32)>,
        reply: oneshot::Sender<Result<Vec<Result<(), ResponseError>>, ResponseError>>,
    },
}

impl GroupCall {
    /// The group the call is about (none for a listing).
    pub fn group(&self) -> Option<&str> {
        match self {
            GroupCall::Join { group, .. }
            | GroupCall::Sync { group, .. }
            | GroupCall::Heartbeat { group, .. }
            | GroupCall::Leave { group, .. }
            | GroupCall::Commit { group, .. }
            | GroupCall::Fetch { group, .. }
            | GroupCall::Describe { group, .. }
            | GroupCall::Delete { group, .. }
            | GroupCall::DeleteOffsets { group, .. } => Some(group),
            GroupCall::List { .. } => None,
        }
    }
}

/// The coordinators' channels, made before the shards start; each shard takes its inbox.
#[derive(Debug)]
pub struct Coordinators {
    senders: Vec<flume::Sender<GroupCall>>,
    inboxes: Mutex<Vec<Option<flume::Receiver<GroupCall>>>>,
}

impl Coordinators {
    pub fn new(shards: usize) -> Arc<Coordinators> {
        let (senders, inboxes) = (0..shards)
            .map(|_| {
                let (sender, inbox) = flume::bounded(CALLS_QUEUED_MAX);
                (sender, Some(inbox))
            })
            .unzip();
        Arc::new(Coordinators {
            senders,
            inboxes: Mutex::new(inboxes),
        })
    }

    /// Shard `index`'s inbox, once.
    pub fn take_inbox(&self, index: usize) -> Option<flume::Receiver<GroupCall>> {
        self.inboxes
            .lock()
            .ok()?
            .get_mut(index)
            .and_then(Option::take)
    }

    pub fn shard_count(&self) -> usize {
        self.senders.len()
    }

    /// Sends `call` to shard `index`'s coordinator; false when it is gone.
    pub async fn send(&self, index: usize, call: GroupCall) -> bool {
        match self.senders.get(index) {
            Some(sender) => sender.send_async(call).await.is_ok(),
            None => false,
        }
    }
}

#[derive(Default)]
struct Groups {
    groups: HashMap<String, Group>,
    offsets: HashMap<String, GroupOffsets>,
}

/// Runs shard `broker`'s coordinator until the shard stops.
pub async fn run(broker: Rc<Broker>, inbox: flume::Receiver<GroupCall>) {
    let state = Rc::new(RefCell::new(Groups::default()));
    let ticking = state.clone();
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(TICK).await;
            let now = Instant::now();
            let mut state = ticking.borrow_mut();
            for group in state.groups.values_mut() {
                group.tick(now);
            }
            // An empty group without members holds nothing (its offsets are kept apart):
            // forgetting it bounds the map by the groups in use.
            state
                .groups
                .retain(|_, group| group.state != State::Empty || !group.members.is_empty());
        }
    })
    .detach();
    let mut loaded = false;
    // In a cluster: the chain epoch each offsets partition was loaded in.
    let mut loaded_in: HashMap<u32, u64> = HashMap::new();
    while let Ok(call) = inbox.recv_async().await {
        match &broker.config.cluster {
            None if !loaded => {
                load(&broker, &state).await;
                loaded = true;
            }
            None => {}
            Some(cluster) => {
                if let Some(group) = call.group() {
                    let partition = offsets::partition_for(group, broker.config.offsets_partitions);
                    let view = cluster.view();
                    let topic = view.state.topic(OFFSETS_TOPIC).map(|topic| topic.id);
                    let ready = topic.and_then(|id| cluster.chains().head_ready((id, partition)));
                    if let Some(epoch) = ready
                        && loaded_in.get(&partition) != Some(&epoch)
                    {
                        // This node became the partition's head: what it knew of the
                        // partition's groups may be stale; the log has it all.
                        forget_partition(&broker, &state, partition);
                        if load_partition(&broker, &state, partition).await.is_some() {
                            loaded_in.insert(partition, epoch);
                        }
                    }
                }
            }
        }
        handle(&broker, &state, call);
        broker.groups.set(state.borrow().groups.len());
    }
}

/// Loads the committed offsets of the partitions of `__consumer_offsets` this shard owns.
async fn load(broker: &Broker, state: &Rc<RefCell<Groups>>) {
    let router = &broker.router;
    broker.ensure_offsets_topic().await;
    let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
        return;
    };
    let mut records = 0usize;
    for partition in 0..topic.partition_count() {
        if topic.owner(partition) == Some(router.shard()) {
            records += load_partition(broker, state, partition).await.unwrap_or(0);
        }
    }
    tracing::debug!(shard = %router.shard(), records, "committed offsets loaded");
}

/// Drops what this coordinator holds of the groups of offsets partition `partition`.
fn forget_partition(broker: &Broker, state: &Rc<RefCell<Groups>>, partition: u32) {
    let count = broker.config.offsets_partitions;
    let mut groups = state.borrow_mut();
    groups
        .groups
        .retain(|group, _| offsets::partition_for(group, count) != partition);
    groups
        .offsets
        .retain(|group, _| offsets::partition_for(group, count) != partition);
}

/// Loads the committed offsets of one partition of `__consumer_offsets`, from its log
/// start up to its high watermark; returns how many records it applied, or `None` when
/// the log could not be read (a later call tries again).
async fn load_partition(
    broker: &Broker,
    state: &Rc<RefCell<Groups>>,
    partition: u32,
) -> Option<usize> {
    let router = &broker.router;
    let mut records = 0usize;
    let failed = |error: &dyn std::fmt::Display| {
        tracing::error!(partition, %error, "cannot load committed offsets");
    };
    let mut from = match router.offsets(OFFSETS_TOPIC, partition).await {
        Ok(offsets) => offsets.log_start,
        Err(error) => {
            failed(&error);
            return None;
        }
    };
    loop {
        let read = match router
            .read(OFFSETS_TOPIC, partition, from, LOAD_READ_BYTES)
            .await
        {
            Ok(read) => read,
            Err(error) => {
                failed(&error);
                return None;
            }
        };
        if read.bytes.is_empty() {
            break;
        }
        let mut groups = state.borrow_mut();
        let (found, next) = offsets::records(read.bytes);
        for (offset, key, value) in found {
            if offset < from.value() {
                continue;
            }
            from = Offset::new(offset + 1).unwrap_or(from);
            let Some((group, topic, partition, committed)) = key
                .as_deref()
                .and_then(|key| offsets::decode(key, value.as_deref()))
            else {
                continue;
            };
            records += 1;
            let entries = groups.offsets.entry(group.clone()).or_default();
            match committed {
                Some(committed) => {
                    entries.insert((topic, partition), committed);
                }
                None => {
                    entries.remove(&(topic, partition));
                    if entries.is_empty() {
                        groups.offsets.remove(&group);
                    }
                }
            }
        }
        if let Some(next) = next.and_then(Offset::new) {
            from = from.max(next);
        }
        if from >= read.offsets.high_watermark {
            break;
        }
    }
    Some(records)
}

fn handle(broker: &Rc<Broker>, state: &Rc<RefCell<Groups>>, call: GroupCall) {
    let now = Instant::now();
    match call {
        GroupCall::Join {
            group,
            join,
            require_known_id,
        } => {
            let mut groups = state.borrow_mut();
            let entry = groups
                .groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(group));
            entry.join(join, require_known_id, now);
            entry.tick(now);
        }
        GroupCall::Sync {
            group,
            member_id,
            generation,
            assignments,
            reply,
        } => match state.borrow_mut().groups.get_mut(&group) {
            Some(entry) => entry.sync(&member_id, generation, assignments, reply, now),
            None => {
                let _ = reply.send(
                    SyncGroupResponse::default()
                        .with_error_code(ResponseError::UnknownMemberId.code()),
                );
            }
        },
        GroupCall::Heartbeat {
            group,
            member_id,
            generation,
            reply,
        } => {
            let answer = match state.borrow_mut().groups.get_mut(&group) {
                Some(entry) => entry.heartbeat(&member_id, generation, now),
                None => Err(ResponseError::UnknownMemberId),
            };
            let _ = reply.send(answer);
        }
        GroupCall::Leave {
            group,
            members,
            reply,
        } => {
            let mut groups = state.borrow_mut();
            let answers = match groups.groups.get_mut(&group) {
                Some(entry) => {
                    let answers = members
                        .iter()
                        .map(|(id, instance)| entry.leave(id, instance.as_deref(), now))
                        .collect();
                    entry.tick(now);
                    answers
                }
                None => vec![Err(ResponseError::UnknownMemberId); members.len()],
            };
            let _ = reply.send(answers);
        }
        GroupCall::Commit {
            group,
            member_id,
            generation,
            offsets,
            reply,
        } => commit(broker, state, group, &member_id, generation, offsets, reply),
        GroupCall::Fetch {
            group,
            wanted,
            reply,
        } => {
            let _ = reply.send(committed(&state.borrow(), &group, wanted));
        }
        GroupCall::List { reply } => {
            let _ = reply.send(listed(&state.borrow()));
        }
        GroupCall::Describe { group, reply } => {
            let groups = state.borrow();
            let found = match groups.groups.get(&group) {
                Some(entry) => Some(view(entry)),
                None => groups.offsets.contains_key(&group).then(empty_view),
            };
            let _ = reply.send(found);
        }
        GroupCall::Delete { group, reply } => delete(broker, state, group, reply),
        GroupCall::DeleteOffsets {
            group,
            partitions,
            reply,
        } => delete_offsets(broker, state, group, partitions, reply),
    }
}

/// The committed offsets of `group`: those asked for (`None` where nothing is committed),
/// or all of them.
fn committed(
    groups: &Groups,
    group: &str,
    wanted: Option<Vec<(String, i32)>>,
) -> Vec<(String, i32, Option<Committed>)> {
    let committed = groups.offsets.get(group);
    match wanted {
        Some(wanted) => wanted
            .into_iter()
            .map(|(topic, partition)| {
                let found = committed
                    .and_then(|offsets| offsets.get(&(topic.clone(), partition)))
                    .cloned();
                (topic, partition, found)
            })
            .collect(),
        None => committed
            .into_iter()
            .flatten()
            .map(|((topic, partition), offset)| (topic.clone(), *partition, Some(offset.clone())))
            .collect(),
    }
}

/// Groups with members or committed offsets.
fn listed(groups: &Groups) -> Vec<(String, GroupView)> {
    let mut listed: Vec<(String, GroupView)> = groups
        .groups
        .iter()
        .filter(|(id, group)| group.state != State::Empty || groups.offsets.contains_key(*id))
        .map(|(id, group)| (id.clone(), view(group)))
        .collect();
    for id in groups.offsets.keys() {
        if !groups.groups.contains_key(id) {
            listed.push((id.clone(), empty_view()));
        }
    }
    listed
}

fn view(group: &Group) -> GroupView {
    let protocol = group.protocol.clone().unwrap_or_default();
    GroupView {
        state: group.state.name(),
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        protocol: protocol.clone(),
        members: group
            .members
            .values()
            .map(|member| MemberView {
                id: member.id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client_id.clone(),
                client_host: member.client_host.clone(),
                metadata: member
                    .protocols
                    .iter()
                    .find(|(name, _)| *name == protocol)
                    .map(|(_, metadata)| metadata.clone())
                    .unwrap_or_default(),
                assignment: member.assignment.clone(),
            })
            .collect(),
    }
}

fn empty_view() -> GroupView {
    GroupView {
        state: State::Empty.name(),
        protocol_type: "consumer".into(),
        ..GroupView::default()
    }
}

/// Checks the committer, writes the offsets durably, then makes them count.
fn commit(
    broker: &Rc<Broker>,
    state: &Rc<RefCell<Groups>>,
    group: String,
    member_id: &str,
    generation: i32,
    committed: Vec<(String, i32, Committed)>,
    reply: oneshot::Sender<Result<(), ResponseError>>,
) {
    let allowed = match state.borrow().groups.get(&group) {
        // A consumer outside any group (assign()) commits with generation -1.
        None => Ok(()),
        Some(entry) if generation < 0 && entry.members.is_empty() => Ok(()),
        Some(entry) => entry.check_member(member_id, generation).and_then(|()| {
            if entry.state == State::CompletingRebalance {
                Err(ResponseError::RebalanceInProgress)
            } else {
                Ok(())
            }
        }),
    };
    if let Err(code) = allowed {
        let _ = reply.send(Err(code));
        return;
    }
    let now_ms = now_ms();
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = committed
        .iter()
        .map(|(topic, partition, offset)| {
            (
                offsets::key(&group, topic, *partition),
                Some(offsets::value(offset, now_ms)),
            )
        })
        .collect();
    write_then(
        broker,
        state,
        group,
        records,
        reply,
        move |groups, group| {
            let entries = groups.offsets.entry(group.to_string()).or_default();
            for (topic, partition, offset) in committed {
                entries.insert((topic, partition), offset);
            }
        },
    );
}

fn delete(
    broker: &Rc<Broker>,
    state: &Rc<RefCell<Groups>>,
    group: String,
    reply: oneshot::Sender<Result<(), ResponseError>>,
) {
    let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = {
        let groups = state.borrow();
        if groups
            .groups
            .get(&group)
            .is_some_and(|entry| entry.state != State::Empty)
        {
            let _ = reply.send(Err(ResponseError::NonEmptyGroup));
            return;
        }
        let Some(committed) = groups.offsets.get(&group) else {
            let found = groups.groups.contains_key(&group);
            drop(groups);
            if found {
                state.borrow_mut().groups.remove(&group);
                let _ = reply.send(Ok(()));
            } else {
                let _ = reply.send(Err(ResponseError::GroupIdNotFound));
            }
            return;
        };
        committed
            .keys()
            .map(|(topic, partition)| (offsets::key(&group, topic, *partition), None))
            .collect()
    };
    write_then(broker, state, group, records, reply, |groups, group| {
        groups.offsets.remove(group);
        groups.groups.remove(group);
    });
}

fn delete_offsets(
    broker: &Rc<Broker>,
    state: &Rc<RefCell<Groups>>,
    group: String,
    partitions: Vec<(String, i32)>,
    reply: oneshot::Sender<Result<Vec<Result<(), ResponseError>>, ResponseError>>,
) {
    let groups = state.borrow();
    let live = groups.groups.get(&group);
    let committed = groups.offsets.get(&group);
    if live.is_none() && committed.is_none() {
        let _ = reply.send(Err(ResponseError::GroupIdNotFound));
        return;
    }
    let subscribed: std::collections::BTreeSet<String> = live
        .filter(|entry| entry.state != State::Empty)
        .map(|entry| entry.subscribed_topics())
        .unwrap_or_default();
    let answers: Vec<Result<(), ResponseError>> = partitions
        .iter()
        .map(|(topic, _)| {
            if subscribed.contains(topic) {
                Err(ResponseError::GroupSubscribedToTopic)
            } else {
                Ok(())
            }
        })
        .collect();
    let doomed: Vec<(String, i32)> = partitions
        .into_iter()
        .zip(&answers)
        .filter(|((topic, partition), answer)| {
            answer.is_ok()
                && committed.is_some_and(|held| held.contains_key(&(topic.clone(), *partition)))
        })
        .map(|(key, _)| key)
        .collect();
    drop(groups);
    if doomed.is_empty() {
        let _ = reply.send(Ok(answers));
        return;
    }
    let records = doomed
        .iter()
        .map(|(topic, partition)| (offsets::key(&group, topic, *partition), None))
        .collect();
    let (done, written) = oneshot::channel();
    write_then(broker, state, group, records, done, move |groups, group| {
        if let Some(held) = groups.offsets.get_mut(group) {
            for key in &doomed {
                held.remove(key);
            }
            if held.is_empty() {
                groups.offsets.remove(group);
            }
        }
    });
    glommio::spawn_local(async move {
        let answer = match written.await {
            Ok(Ok(())) => Ok(answers),
            Ok(Err(code)) => Err(code),
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        };
        let _ = reply.send(answer);
    })
    .detach();
}

/// Appends `records` to the group's partition of `__consumer_offsets`; once durable,
/// applies `then` and answers.
fn write_then(
    broker: &Rc<Broker>,
    state: &Rc<RefCell<Groups>>,
    group: String,
    records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    reply: oneshot::Sender<Result<(), ResponseError>>,
    then: impl FnOnce(&mut Groups, &str) + 'static,
) {
    let (broker, state) = (broker.clone(), state.clone());
    glommio::spawn_local(async move {
        let partition = offsets::partition_for(&group, broker.config.offsets_partitions);
        let batch = offsets::batch(&records, now_ms());
        let stored = match strand_engine::ValidatedBatch::new(batch, usize::MAX) {
            Ok(batch) => broker.append(OFFSETS_TOPIC, partition, batch).await,
            Err(error) => {
                tracing::error!(%error, "built an invalid offsets batch");
                let _ = reply.send(Err(ResponseError::UnknownServerError));
                return;
            }
        };
        match stored {
            Ok(_) => {
                then(&mut state.borrow_mut(), &group);
                let _ = reply.send(Ok(()));
            }
            Err(error) => {
                tracing::warn!(%group, %error, "committing offsets failed");
                let _ = reply.send(Err(ResponseError::CoordinatorNotAvailable));
            }
        }
    })
    .detach();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|since| i64::try_from(since.as_millis()).ok())
        .unwrap_or(0)
}
