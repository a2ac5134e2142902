//! One consumer group's membership, as Kafka's classic group protocol runs it: members join,
//! the coordinator waits until every known member has rejoined (or the rebalance timeout
//! passes), picks a protocol all support and a leader, answers every join, takes the
//! leader's assignment in SyncGroup and hands each member its share. Heartbeats keep members
//! alive; a member silent for its session timeout is removed and the group rebalances.
//!
//! Sans-IO: calls come in with the time, and the replies to send come out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

/// How long a new group waits for more members before its first rebalance completes
/// (Kafka's `group.initial.rebalance.delay.ms`, shortened: clients start together).
pub const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(300);
/// Members one group may hold.
pub const MEMBERS_MAX: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    /// Kafka's name for the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// A join as a member sent it.
#[derive(Debug)]
pub struct Join {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub reply: oneshot::Sender<JoinGroupResponse>,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_seen: Instant,
    joining: Option<oneshot::Sender<JoinGroupResponse>>,
    syncing: Option<oneshot::Sender<SyncGroupResponse>>,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: State,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// When the rebalance in progress completes even if members have not rejoined.
    rebalance_deadline: Option<Instant>,
    /// Order in which members joined this rebalance: the first becomes leader.
    join_order: Vec<String>,
    /// A group's first rebalance waits out its deadline for more members.
    initial: bool,
    next_member: u64,
}

fn error(code: ResponseError) -> i16 {
    code.code()
}

/// A JoinGroup refusal: the error, no generation, and the member id to use (if any).
fn join_refusal(code: ResponseError, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error(code))
        .with_generation_id(-1)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
}

impl Group {
    /// The topics the members subscribe to, read from their consumer-protocol metadata
    /// (Kafka's `ConsumerProtocolSubscription`: version, then the topic names); members of
    /// other protocols subscribe to none.
    pub fn subscribed_topics(&self) -> std::collections::BTreeSet<String> {
        let mut topics = std::collections::BTreeSet::new();
        if self.protocol_type.as_deref() != Some("consumer") {
            return topics;
        }
        for member in self.members.values() {
            for (_, metadata) in &member.protocols {
                topics.extend(subscription_topics(metadata));
            }
        }
        topics
    }

    pub fn new(id: String) -> Group {
        Group {
            id,
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline: None,
            join_order: Vec::new(),
            initial: false,
            next_member: 0,
        }
    }

    /// Handles a JoinGroup. `require_known_id`: from version 4 a member without an id first
    /// gets one back with MEMBER_ID_REQUIRED (KIP-394).
    pub fn join(&mut self, join: Join, require_known_id: bool, now: Instant) {
        let refuse = |join: Join, code: ResponseError| {
            let _ = join.reply.send(join_refusal(code, &join.member_id));
        };
        if self
            .protocol_type
            .as_ref()
            .is_some_and(|kind| *kind != join.protocol_type)
            && !self.members.is_empty()
            || join.protocols.is_empty()
        {
            return refuse(join, ResponseError::InconsistentGroupProtocol);
        }
        if !self.members.is_empty() && !self.supports_any(&join.protocols) {
            return refuse(join, ResponseError::InconsistentGroupProtocol);
        }
        let static_member = join.group_instance_id.as_ref().and_then(|instance| {
            self.members
                .values()
                .find(|member| member.group_instance_id.as_ref() == Some(instance))
                .map(|member| member.id.clone())
        });
        let known = self.members.contains_key(&join.member_id);
        if join.member_id.is_empty() || (!known && static_member.is_some()) {
            if let Some(old) = static_member {
                // A static member came back: it takes its old place under a new id, and the
                // old id is fenced. A stable group with unchanged protocols does not rebalance.
                return self.replace_static(old, join, now);
            }
            if self.members.len() >= MEMBERS_MAX {
                return refuse(join, ResponseError::GroupMaxSizeReached);
            }
            let id = self.new_member_id(&join.client_id);
            if require_known_id && join.group_instance_id.is_none() {
                // Answered MEMBER_ID_REQUIRED and remembered without a pending join, so its
                // rejoin is known; it expires with its session timeout like any silent member.
                self.add_member(id, join, false, now);
                return;
            }
            self.add_member(id, join, true, now);
            self.prepare_rebalance(now);
            return;
        }
        if !known {
            return refuse(join, ResponseError::UnknownMemberId);
        }
        let id = join.member_id.clone();
        self.add_member(id, join, true, now);
        self.prepare_rebalance(now);
    }

    fn add_member(&mut self, id: String, join: Join, pending: bool, now: Instant) {
        let reply = if pending {
            Some(join.reply)
        } else {
            let _ = join
                .reply
                .send(join_refusal(ResponseError::MemberIdRequired, &id));
            None
        };
        if self.members.is_empty() {
            self.protocol_type = Some(join.protocol_type.clone());
        }
        let assignment = self
            .members
            .get(&id)
            .map(|member| member.assignment.clone())
            .unwrap_or_default();
        if let Some(previous) = self
            .members
            .get_mut(&id)
            .and_then(|member| member.joining.take())
        {
            let _ = previous.send(join_refusal(ResponseError::UnknownMemberId, ""));
        }
        if pending && !self.join_order.contains(&id) {
            self.join_order.push(id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id,
                group_instance_id: join.group_instance_id,
                client_id: join.client_id,
                client_host: join.client_host,
                session_timeout: join.session_timeout,
                rebalance_timeout: join.rebalance_timeout,
                protocols: join.protocols,
                assignment,
                last_seen: now,
                joining: reply,
                syncing: None,
            },
        );
    }

    fn replace_static(&mut self, old: String, join: Join, now: Instant) {
        let Some(previous) = self.members.remove(&old) else {
            return;
        };
        if let Some(reply) = previous.joining {
            let _ = reply.send(join_refusal(ResponseError::FencedInstanceId, ""));
        }
        let id = self.new_member_id(&join.client_id);
        let unchanged = previous.protocols == join.protocols;
        if self.leader.as_ref() == Some(&old) {
            self.leader = Some(id.clone());
        }
        self.join_order.retain(|member| *member != old);
        if self.state == State::Stable && unchanged {
            let reply = join.reply;
            self.members.insert(
                id.clone(),
                Member {
                    id: id.clone(),
                    group_instance_id: join.group_instance_id,
                    client_id: join.client_id,
                    client_host: join.client_host,
                    session_timeout: join.session_timeout,
                    rebalance_timeout: join.rebalance_timeout,
                    protocols: join.protocols,
                    assignment: previous.assignment,
                    last_seen: now,
                    joining: None,
                    syncing: None,
                },
            );
            let _ = reply.send(self.join_response(&id, false));
            return;
        }
        self.add_member(id, join, true, now);
        self.prepare_rebalance(now);
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        let mut random = [0u8; 8];
        let _ = getrandom::fill(&mut random);
        format!(
            "{client_id}-{}-{:016x}",
            self.next_member,
            u64::from_be_bytes(random)
        )
    }

    /// True when some protocol of `protocols` is supported by every current member.
    fn supports_any(&self, protocols: &[(String, Bytes)]) -> bool {
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|member| member.protocols.iter().any(|(other, _)| other == name))
        })
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == State::PreparingRebalance {
            return;
        }
        // Members waiting in SyncGroup must rejoin.
        for member in self.members.values_mut() {
            if let Some(reply) = member.syncing.take() {
                let _ = reply.send(
                    SyncGroupResponse::default()
                        .with_error_code(error(ResponseError::RebalanceInProgress)),
                );
            }
        }
        let timeout = self
            .members
            .values()
            .map(|member| member.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.initial = self.state == State::Empty;
        let delay = if self.initial {
            INITIAL_REBALANCE_DELAY.min(timeout)
        } else {
            timeout
        };
        self.state = State::PreparingRebalance;
        self.rebalance_deadline = Some(now + delay);
    }

    /// Advances timers: expires silent members, completes a rebalance whose members have
    /// all rejoined or whose deadline passed.
    pub fn tick(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| {
                member.joining.is_none()
                    && member.syncing.is_none()
                    && now.duration_since(member.last_seen) > member.session_timeout
            })
            .map(|member| member.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member's session expired");
            self.remove(&id, now);
        }
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|member| member.joining.is_some());
        let deadline_passed = self
            .rebalance_deadline
            .is_some_and(|deadline| now >= deadline);
        if deadline_passed || (all_joined && !self.initial) {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        // Members that did not rejoin in time are out.
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|member| member.joining.is_none())
            .map(|member| member.id.clone())
            .collect();
        for id in absent {
            self.members.remove(&id);
        }
        self.rebalance_deadline = None;
        self.initial = false;
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        self.generation += 1;
        self.protocol = self.choose_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|leader| !self.members.contains_key(leader))
        {
            self.leader = self
                .join_order
                .iter()
                .find(|id| self.members.contains_key(*id))
                .cloned()
                .or_else(|| self.members.keys().next().cloned());
        }
        self.join_order.clear();
        self.state = State::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(&id, true);
            if let Some(member) = self.members.get_mut(&id) {
                member.last_seen = now;
                if let Some(reply) = member.joining.take() {
                    let _ = reply.send(response);
                }
            }
        }
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "rebalance complete");
    }

    fn join_response(&self, id: &str, list_members_to_leader: bool) -> JoinGroupResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if list_members_to_leader && leader == id {
            self.members
                .values()
                .map(|member| {
                    let metadata = member
                        .protocols
                        .iter()
                        .find(|(name, _)| *name == protocol)
                        .map(|(_, metadata)| metadata.clone())
                        .unwrap_or_default();
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(member.id.clone()))
                        .with_group_instance_id(
                            member.group_instance_id.clone().map(StrBytes::from_string),
                        )
                        .with_metadata(metadata)
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_generation_id(self.generation)
            .with_protocol_type(self.protocol_type.clone().map(StrBytes::from_string))
            .with_protocol_name(Some(StrBytes::from_string(protocol)))
            .with_leader(StrBytes::from_string(leader))
            .with_member_id(StrBytes::from_string(id.to_string()))
            .with_members(members)
    }

    fn choose_protocol(&self) -> Option<String> {
        let leader = self
            .join_order
            .first()
            .and_then(|id| self.members.get(id))
            .or_else(|| self.members.values().next())?;
        leader
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| {
                self.members
                    .values()
                    .all(|member| member.protocols.iter().any(|(other, _)| other == *name))
            })
            .cloned()
    }

    /// Checks a member and generation; the error Kafka gives when they do not match.
    pub fn check_member(&self, member_id: &str, generation: i32) -> Result<(), ResponseError> {
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        reply: oneshot::Sender<SyncGroupResponse>,
        now: Instant,
    ) {
        let respond = |reply: oneshot::Sender<SyncGroupResponse>, code: ResponseError| {
            let _ = reply.send(SyncGroupResponse::default().with_error_code(error(code)));
        };
        if let Err(code) = self.check_member(member_id, generation) {
            return respond(reply, code);
        }
        match self.state {
            State::Empty | State::PreparingRebalance => {
                respond(reply, ResponseError::RebalanceInProgress);
            }
            State::Stable => {
                let assignment = self.members[member_id].assignment.clone();
                let _ = reply.send(self.sync_response(assignment));
            }
            State::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.last_seen = now;
                    member.syncing = Some(reply);
                }
                if self.leader.as_deref() == Some(member_id) {
                    for member in self.members.values_mut() {
                        member.assignment = assignments
                            .iter()
                            .find(|(id, _)| *id == member.id)
                            .map(|(_, assignment)| assignment.clone())
                            .unwrap_or_default();
                    }
                    self.state = State::Stable;
                    let waiting: Vec<(oneshot::Sender<SyncGroupResponse>, Bytes)> = self
                        .members
                        .values_mut()
                        .filter_map(|member| {
                            Some((member.syncing.take()?, member.assignment.clone()))
                        })
                        .collect();
                    for (reply, assignment) in waiting {
                        let _ = reply.send(self.sync_response(assignment));
                    }
                }
            }
        }
    }

    fn sync_response(&self, assignment: Bytes) -> SyncGroupResponse {
        SyncGroupResponse::default()
            .with_protocol_type(self.protocol_type.clone().map(StrBytes::from_string))
            .with_protocol_name(self.protocol.clone().map(StrBytes::from_string))
            .with_assignment(assignment)
    }

    /// A heartbeat; REBALANCE_IN_PROGRESS tells the member to rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        self.check_member(member_id, generation)?;
        if let Some(member) = self.members.get_mut(member_id) {
            member.last_seen = now;
        }
        if self.state == State::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// A member leaves; the rest rebalance.
    pub fn leave(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let id = match group_instance_id {
            Some(instance) if member_id.is_empty() => self
                .members
                .values()
                .find(|member| member.group_instance_id.as_deref() == Some(instance))
                .map(|member| member.id.clone())
                .ok_or(ResponseError::UnknownMemberId)?,
            _ => member_id.to_string(),
        };
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        tracing::info!(group = %self.id, member = %id, "member left");
        self.remove(&id, now);
        Ok(())
    }

    fn remove(&mut self, id: &str, now: Instant) {
        let Some(member) = self.members.remove(id) else {
            return;
        };
        if let Some(reply) = member.joining {
            let _ = reply.send(join_refusal(ResponseError::UnknownMemberId, ""));
        }
        if let Some(reply) = member.syncing {
            let _ = reply.send(
                SyncGroupResponse::default().with_error_code(error(ResponseError::UnknownMemberId)),
            );
        }
        self.join_order.retain(|other| other != id);
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        if self.members.is_empty() {
            self.become_empty();
        } else if self.state != State::PreparingRebalance {
            self.prepare_rebalance(now);
        }
    }

    fn become_empty(&mut self) {
        self.state = State::Empty;
        self.leader = None;
        self.protocol = None;
        self.rebalance_deadline = None;
        self.initial = false;
        self.join_order.clear();
    }
}

/// The topic names of a consumer-protocol subscription (any version: the topics come
/// first after the version); what does not parse yields none.
fn subscription_topics(metadata: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let Some(rest) = metadata.get(2..) else {
        return topics;
    };
    let Some(count) = rest
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return topics;
    };
    let mut at = 4;
    for _ in 0..count.max(0) {
        let Some(len) = rest
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            break;
        };
        let Some(name) = rest.get(at + 2..at + 2 + len) else {
            break;
        };
        topics.push(String::from_utf8_lossy(name).into_owned());
        at += 2 + len;
    }
    topics
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn join(
        member_id: &str,
        group: &mut Group,
        now: Instant,
    ) -> oneshot::Receiver<JoinGroupResponse> {
        let (reply, answer) = oneshot::channel();
        let join = Join {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: String::new(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            reply,
        };
        group.join(join, false, now);
        answer
    }

    fn sync(
        group: &mut Group,
        member: &str,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> oneshot::Receiver<SyncGroupResponse> {
        let (reply, answer) = oneshot::channel();
        group.sync(member, group.generation, assignments, reply, now);
        answer
    }

    #[test]
    fn members_join_one_leads_and_the_leader_assigns() {
        let start = Instant::now();
        let mut group = Group::new("g".into());
        let mut first = join("", &mut group, start);
        let mut second = join("", &mut group, start);
        group.tick(start);
        assert!(
            first.try_recv().unwrap().is_none(),
            "the first rebalance waits for more members"
        );
        group.tick(start + INITIAL_REBALANCE_DELAY);
        let (first, second) = (
            first.try_recv().unwrap().unwrap(),
            second.try_recv().unwrap().unwrap(),
        );
        assert_eq!((first.generation_id, second.generation_id), (1, 1));
        assert_eq!(first.leader, first.member_id);
        assert_eq!((first.members.len(), second.members.len()), (2, 0));
        let (leader, follower) = (first.member_id.to_string(), second.member_id.to_string());
        let mut waiting = sync(&mut group, &follower, Vec::new(), start);
        assert!(
            waiting.try_recv().unwrap().is_none(),
            "followers wait for the leader"
        );
        let plan = vec![
            (leader.clone(), Bytes::from_static(b"L")),
            (follower.clone(), Bytes::from_static(b"F")),
        ];
        let led = sync(&mut group, &leader, plan, start)
            .try_recv()
            .unwrap()
            .unwrap();
        assert_eq!(led.assignment, Bytes::from_static(b"L"));
        assert_eq!(
            waiting.try_recv().unwrap().unwrap().assignment,
            Bytes::from_static(b"F")
        );
        assert_eq!(group.state, State::Stable);
    }

    #[test]
    fn a_leaving_or_silent_member_makes_the_rest_rejoin() {
        let start = Instant::now();
        let mut group = Group::new("g".into());
        let mut a = join("", &mut group, start);
        let mut b = join("", &mut group, start);
        group.tick(start + INITIAL_REBALANCE_DELAY);
        let (a, b) = (
            a.try_recv().unwrap().unwrap(),
            b.try_recv().unwrap().unwrap(),
        );
        let (a, b) = (a.member_id.to_string(), b.member_id.to_string());
        drop(sync(&mut group, &a, Vec::new(), start));
        group.leave(&b, None, start).unwrap();
        assert_eq!(
            group.heartbeat(&a, 1, start),
            Err(ResponseError::RebalanceInProgress)
        );
        let mut rejoined = join(&a, &mut group, start);
        group.tick(start);
        assert_eq!(rejoined.try_recv().unwrap().unwrap().generation_id, 2);
        // Silent past its session timeout (10 s): removed, and the group is empty.
        group.tick(start + Duration::from_secs(11));
        assert_eq!(group.state, State::Empty);
        assert!(group.members.is_empty());
    }
}
