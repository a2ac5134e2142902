//! The thread that runs this node's controller: the quorum member and its log file, the
//! links to the other nodes, this node's registration and heartbeats, and the view of the
//! cluster the rest of the process reads.
//!
//! One loop, one thread: wait for a frame or the next tick; feed the frames to the
//! [`ControllerNode`]; tick it on time; send what [`Membership`] asks of the leader; then
//! run the quorum's ready cycle in its order (persist the records, then send the
//! messages, then act on what was applied) and publish a new [`ClusterView`] when the
//! state, the leader or the lease changed. A failed write to the log stops the controller:
//! a member that cannot persist must not vote or acknowledge.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::log_file::{LogFile, LogFileError};
use super::membership::{Membership, Request};
use super::topic_desk::{Asker, TOPIC_REQUESTS_MAX, TopicDesk, TopicRequest};
use crate::binding::{ChainHub, read_message};
use crate::controller::{
    ClusterState, ControllerConfig, ControllerNode, Endpoint, Heartbeat, HeartbeatAnswer,
    ProposalId, QuorumConfig, QuorumError, ReplicaReport, Timing, TopicChange, TopicRefusal,
    decode_message, encode_message, topic_command,
};
use crate::ids::{ChainEpoch, NodeId};
use crate::transport::{Frame, FrameBuilder, Inbound, Links, NodeMessage, WireAnswer, WireReport};

/// Events the controller thread waits for, at most this many at once (links block when
/// it is full, which backs up into TCP).
const INBOX_MAX: usize = 1024;

/// Events handled per loop before the quorum's output is taken, so a flood of frames
/// cannot starve ticks.
const EVENTS_PER_CYCLE_MAX: usize = 256;

/// How a node's controller runs.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub node: NodeId,
    /// Every node's internal address (`host:port`), this node's included.
    pub peers: BTreeMap<NodeId, String>,
    /// Where Kafka clients reach this node.
    pub kafka: Endpoint,
    /// The directory of the controller log.
    pub dir: PathBuf,
    pub controller: ControllerConfig,
    /// How often this node heartbeats to the controller leader.
    pub heartbeat_ms: u64,
    /// The shards whose chain drivers the node runs, and where they keep their state.
    pub shards: usize,
    pub chains_dir: PathBuf,
}

impl HostConfig {
    /// A node's controller with the defaults `strand serve` uses: ticks of 50 ms, an
    /// election after 10 to 20 silent ticks (0.5 to 1 s), heartbeats every 100 ms, a lease
    /// of 500 ms, and a node fenced and cut from its chains after 800 ms of silence.
    pub fn new(
        node: NodeId,
        peers: BTreeMap<NodeId, String>,
        kafka: Endpoint,
        dir: PathBuf,
    ) -> HostConfig {
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        HostConfig {
            node,
            controller: ControllerConfig {
                quorum: QuorumConfig {
                    node,
                    nodes: peers.keys().copied().collect(),
                    election_ticks: 10,
                    heartbeat_ticks: 2,
                    log_entries_max: 1000,
                    uncommitted_bytes_max: 8 << 20,
                    incarnation,
                },
                timing: Timing::new(500, 800),
                tick_ms: 50,
                decisions_per_tick_max: 256,
            },
            peers,
            kafka,
            chains_dir: dir.with_file_name("chains"),
            dir,
            heartbeat_ms: 100,
            shards: 1,
        }
    }
}

/// Why the controller could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("controller log: {0}")]
    Log(#[from] LogFileError),
    #[error("controller quorum: {0}")]
    Quorum(#[from] QuorumError),
    #[error("{0}")]
    Config(String),
    #[error("starting the controller's threads: {0}")]
    Threads(std::io::Error),
}

/// What the rest of the process sees of the cluster: a snapshot, replaced whole.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub node: NodeId,
    pub state: Arc<ClusterState>,
    pub applied_index: u64,
    /// The controller leader this node knows of.
    pub leader: Option<NodeId>,
    /// This run's registration is applied.
    pub registered: bool,
    /// When this node's lease lapses, if it holds one it may use.
    pub lease_until: Option<Instant>,
    /// Peers whose link from this node is up.
    pub connected: Vec<NodeId>,
}

/// A handle on the controller's published view, for any thread.
#[derive(Clone, Debug)]
pub struct ControllerHandle {
    view: Arc<Mutex<Arc<ClusterView>>>,
    chains: Arc<ChainHub>,
    topics: SyncSender<TopicRequest>,
}

impl ControllerHandle {
    /// Asks the controller for a topic change (a topic of `partitions` chains of
    /// `replication_factor` live nodes, partitions added, a topic deleted); answers once
    /// the cluster's log applied it, or why not. The leader makes it; another node forwards
    /// it to the leader it knows.
    pub async fn change_topics(&self, change: TopicChange) -> Result<(), TopicRefusal> {
        let (reply, answer) = futures::channel::oneshot::channel();
        self.topics
            .try_send(TopicRequest { change, reply })
            .map_err(|_| TopicRefusal::Busy(TOPIC_REQUESTS_MAX))?;
        answer.await.unwrap_or(Err(TopicRefusal::Lost))
    }

    /// Asks the controller to create a topic (see [`ControllerHandle::change_topics`]).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
        configs: Vec<(String, String)>,
    ) -> Result<(), TopicRefusal> {
        self.change_topics(TopicChange::Create {
            name: name.to_owned(),
            partitions,
            replication_factor,
            configs,
        })
        .await
    }

    /// What the shards' chain drivers share.
    pub fn chains(&self) -> &Arc<ChainHub> {
        &self.chains
    }

    /// The latest view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, view: ClusterView) {
        *self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(view);
    }
}

/// A running controller.
#[derive(Debug)]
pub struct ControllerHost {
    handle: ControllerHandle,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), HostError>>>,
}

impl ControllerHost {
    /// Opens the log, starts the links on `listener` and the controller thread.
    pub fn start(config: HostConfig, listener: TcpListener) -> Result<ControllerHost, HostError> {
        let internal = config
            .peers
            .get(&config.node)
            .ok_or_else(|| {
                HostError::Config(format!(
                    "node {} is not among the peers ({})",
                    config.node.value(),
                    describe_peers(&config.peers)
                ))
            })
            .and_then(|address| parse_endpoint(address).map_err(HostError::Config))?;
        let (log, records, _) = LogFile::open(&config.dir)?;
        let controller = ControllerNode::new(config.controller.clone(), records)?;
        let (events, inbox) = std::sync::mpsc::sync_channel(INBOX_MAX);
        let links = Arc::new(
            Links::start(config.node, listener, &config.peers, events)
                .map_err(HostError::Threads)?,
        );
        let chains = Arc::new(ChainHub::new(
            config.node,
            config.shards,
            &config.chains_dir,
        ));
        let (topics, topic_requests) = std::sync::mpsc::sync_channel(TOPIC_REQUESTS_MAX);
        chains.set_links(links.clone());
        let started = Instant::now();
        let handle = ControllerHandle {
            view: Arc::new(Mutex::new(Arc::new(ClusterView {
                node: config.node,
                state: Arc::new(controller.state().clone()),
                applied_index: controller.quorum().applied_index(),
                leader: None,
                registered: false,
                lease_until: None,
                connected: Vec::new(),
            }))),
            chains,
            topics,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut running = Running {
            node: config.node,
            tick_ms: config.controller.tick_ms.max(1),
            membership: Membership::new(
                config.kafka.clone(),
                internal,
                config.controller.quorum.incarnation,
                config.heartbeat_ms,
            ),
            controller,
            log,
            links,
            started,
            registrations: HashMap::new(),
            topic_requests,
            topics: TopicDesk::default(),
            handle: handle.clone(),
            published: None,
        };
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("strand-controller".to_owned())
            .spawn(move || {
                let result = running.run(&inbox, &stopping);
                // The links' readers see the inbox gone and stop at once.
                drop(inbox);
                drop(running);
                result
            })
            .map_err(HostError::Threads)?;
        Ok(ControllerHost {
            handle,
            stop,
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> ControllerHandle {
        self.handle.clone()
    }

    /// True once the controller thread ended (it failed: see [`ControllerHost::stop`]).
    pub fn has_stopped(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the controller thread and its links; returns why it had stopped, if it failed.
    pub fn stop(mut self) -> Result<(), HostError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), HostError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(HostError::Config(
                "the controller thread panicked".to_owned(),
            )),
            None => Ok(()),
        }
    }
}

impl Drop for ControllerHost {
    fn drop(&mut self) {
        if let Err(error) = self.join() {
            tracing::error!(%error, "controller stopped");
        }
    }
}

/// The controller thread's state.
struct Running {
    node: NodeId,
    tick_ms: u64,
    controller: ControllerNode,
    membership: Membership,
    log: LogFile,
    links: Arc<Links>,
    started: Instant,
    /// Registrations this node proposed as leader, to answer once applied.
    registrations: HashMap<ProposalId, NodeId>,
    topic_requests: Receiver<TopicRequest>,
    topics: TopicDesk,
    handle: ControllerHandle,
    /// What the last published view was made from.
    published: Option<Published>,
}

/// What a published view was made from: the applied index, the leader, registration,
/// the lease's end and the connected peers.
type Published = (u64, Option<NodeId>, bool, Option<u64>, Vec<NodeId>);

/// Messages for peers, gathered over one cycle: one frame per peer.
#[derive(Default)]
struct Outbox {
    frames: BTreeMap<NodeId, FrameBuilder>,
}

impl Outbox {
    fn push(&mut self, from: NodeId, to: NodeId, message: NodeMessage) {
        self.frames
            .entry(to)
            .or_insert_with(|| FrameBuilder::new(from, to))
            .push(message);
    }

    fn push_raft(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        let builder = self
            .frames
            .entry(to)
            .or_insert_with(|| FrameBuilder::new(from, to));
        let span = builder.payload(Bytes::from(bytes));
        builder.push(NodeMessage::Controller { span });
    }
}

impl Running {
    fn run(&mut self, inbox: &Receiver<Inbound>, stop: &AtomicBool) -> Result<(), HostError> {
        let mut next_tick = self.tick_ms;
        while !stop.load(Ordering::Relaxed) {
            let mut outbox = Outbox::default();
            let wait = next_tick.saturating_sub(self.now_ms());
            match inbox.recv_timeout(Duration::from_millis(wait)) {
                Ok(event) => {
                    self.handle(event, &mut outbox);
                    for event in inbox.try_iter().take(EVENTS_PER_CYCLE_MAX) {
                        self.handle(event, &mut outbox);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = self.now_ms();
            if now >= next_tick {
                for peer in self.links.peers().filter(|peer| self.links.refused(*peer)) {
                    self.controller.refused(peer);
                }
                // One tick per pass even after a stall (a paused process): raft-rs counts
                // ticks, and a burst of them would start elections at once.
                self.controller.tick(now);
                next_tick = now + self.tick_ms;
            }
            self.membership_requests(now, &mut outbox);
            while let Ok(request) = self.topic_requests.try_recv() {
                self.topic_request(request, now, &mut outbox);
            }
            self.cycle(outbox)?;
        }
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn handle(&mut self, event: Inbound, outbox: &mut Outbox) {
        match event {
            Inbound::Down(peer) => self.controller.quorum_mut().unreachable(peer),
            Inbound::Frame(frame) => self.frame(&frame, outbox),
        }
    }

    fn frame(&mut self, frame: &Frame, outbox: &mut Outbox) {
        let from = frame.header.from;
        for message in &frame.header.messages {
            match message {
                NodeMessage::Controller { span } => {
                    let stepped = decode_message(&frame.bytes(*span))
                        .map_err(|error| error.to_string())
                        .and_then(|message| {
                            self.controller
                                .quorum_mut()
                                .step(message)
                                .map_err(|error| error.to_string())
                        });
                    if let Err(error) = stepped {
                        tracing::warn!(%from, %error, "controller message refused");
                    }
                }
                NodeMessage::Register {
                    kafka,
                    internal,
                    incarnation,
                } => {
                    if let Some(answer) = self.register(from, kafka, internal, *incarnation) {
                        outbox.push(self.node, from, answer);
                    }
                }
                NodeMessage::Registered { .. } => self.membership.registered(self.now_ms()),
                NodeMessage::RegisterRefused { .. } => {} // retried on the next interval
                NodeMessage::Heartbeat { id, reports } => {
                    let answer = self.heartbeat(from, reports);
                    outbox.push(
                        self.node,
                        from,
                        NodeMessage::HeartbeatAnswer {
                            id: *id,
                            answer: answer.into(),
                        },
                    );
                }
                NodeMessage::HeartbeatAnswer { id, answer } => {
                    self.membership.answer(*id, &(*answer).into());
                }
                NodeMessage::ChangeTopics { id, change } => {
                    let asker = Asker::Peer {
                        node: from,
                        id: *id,
                    };
                    if self.controller.quorum().is_leader() {
                        self.propose_topic(change, asker, outbox);
                    } else {
                        self.answer_topic(asker, Err(TopicRefusal::NoController), outbox);
                    }
                }
                NodeMessage::TopicAnswer { id, refusal } => {
                    let outcome = refusal.clone().map_or(Ok(()), Err);
                    self.topics.answered(*id, outcome);
                }
                NodeMessage::Chain {
                    topic_id,
                    partition,
                    message,
                } => match read_message(frame, message) {
                    Ok(message) => {
                        self.handle
                            .chains
                            .deliver(from, (*topic_id, *partition), message);
                    }
                    Err(error) => tracing::warn!(%from, %error, "chain message dropped"),
                },
            }
        }
    }

    /// A registration from `node` (this one included): proposed if this node leads, or
    /// refused with the leader to ask.
    fn register(
        &mut self,
        node: NodeId,
        kafka: &Endpoint,
        internal: &Endpoint,
        incarnation: u64,
    ) -> Option<NodeMessage> {
        match self
            .controller
            .register(node, kafka.clone(), internal.clone(), incarnation)
        {
            Ok(proposal) => {
                self.registrations.insert(proposal, node);
                None
            }
            Err(error) => {
                tracing::debug!(%node, %error, "registration not proposed");
                Some(NodeMessage::RegisterRefused {
                    leader: self.controller.quorum().leader(),
                })
            }
        }
    }

    fn heartbeat(&mut self, node: NodeId, reports: &[WireReport]) -> HeartbeatAnswer {
        let state = self.controller.state();
        let names: HashMap<[u8; 16], &String> = state
            .topics()
            .iter()
            .map(|(name, topic)| (topic.id, name))
            .collect();
        let reports = reports
            .iter()
            .filter_map(|report| {
                let name = names.get(&report.topic_id)?;
                Some((
                    (String::clone(name), report.partition),
                    replica_report(report)?,
                ))
            })
            .collect();
        let heartbeat = Heartbeat { node, reports };
        let now = self.now_ms();
        self.controller.heartbeat(&heartbeat, now)
    }

    /// The front end asks for a topic change: proposed here as leader, else forwarded to
    /// the leader.
    fn topic_request(&mut self, request: TopicRequest, now: u64, outbox: &mut Outbox) {
        let TopicRequest { change, reply } = request;
        if self.controller.quorum().is_leader() {
            self.propose_topic(&change, Asker::Local(reply), outbox);
            return;
        }
        let Some(leader) = self.controller.quorum().leader() else {
            let _ = reply.send(Err(TopicRefusal::NoController));
            return;
        };
        match self.topics.forward(reply, now) {
            Ok(id) => outbox.push(self.node, leader, NodeMessage::ChangeTopics { id, change }),
            Err(reply) => {
                let _ = reply.send(Err(TopicRefusal::Busy(TOPIC_REQUESTS_MAX)));
            }
        }
    }

    /// Proposes a topic change (this node leads), answering `asker` at once if it cannot
    /// be.
    fn propose_topic(&mut self, change: &TopicChange, asker: Asker, outbox: &mut Outbox) {
        if !self.topics.can_propose() {
            self.answer_topic(asker, Err(TopicRefusal::Busy(TOPIC_REQUESTS_MAX)), outbox);
            return;
        }
        let mut id = [0u8; 16];
        if getrandom::fill(&mut id).is_err() {
            self.answer_topic(asker, Err(TopicRefusal::Lost), outbox);
            return;
        }
        // A version 4 (random) UUID, as Kafka's topic ids.
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        let state = self.controller.state();
        let proposed = topic_command(state, change, id).and_then(|command| {
            self.controller
                .quorum_mut()
                .propose(&command)
                .map_err(|_| TopicRefusal::NoController)
        });
        match proposed {
            Ok(proposal) => self.topics.proposed(proposal, asker, self.now_ms()),
            Err(refusal) => self.answer_topic(asker, Err(refusal), outbox),
        }
    }

    fn answer_topic(&self, asker: Asker, outcome: Result<(), TopicRefusal>, outbox: &mut Outbox) {
        match asker {
            Asker::Local(reply) => {
                let _ = reply.send(outcome);
            }
            Asker::Peer { node, id } => outbox.push(
                self.node,
                node,
                NodeMessage::TopicAnswer {
                    id,
                    refusal: outcome.err(),
                },
            ),
        }
    }

    /// Sends what this node's membership asks of the leader; to itself when it leads.
    fn membership_requests(&mut self, now: u64, outbox: &mut Outbox) {
        let leader = self.controller.quorum().leader();
        let Some(request) = self.membership.poll(now, leader.is_some()) else {
            return;
        };
        let leader = leader.expect("polled with a leader");
        let message = match request {
            Request::Register {
                kafka,
                internal,
                incarnation,
            } => {
                if leader == self.node {
                    self.register(self.node, &kafka, &internal, incarnation);
                    return;
                }
                NodeMessage::Register {
                    kafka,
                    internal,
                    incarnation,
                }
            }
            Request::Heartbeat { id } => {
                let reports = self.handle.chains.reports();
                if leader == self.node {
                    let answer = self.heartbeat(self.node, &reports);
                    self.membership.answer(id, &answer);
                    return;
                }
                NodeMessage::Heartbeat { id, reports }
            }
        };
        outbox.push(self.node, leader, message);
    }

    /// The quorum's ready cycle: persist, send, act on what was applied, publish.
    fn cycle(&mut self, mut outbox: Outbox) -> Result<(), HostError> {
        let out = self.controller.take_output();
        if out.rewrite {
            self.log.rewrite(&out.records)?;
        } else {
            self.log.append(&out.records)?;
        }
        for (to, message) in &out.messages {
            outbox.push_raft(self.node, *to, encode_message(message));
        }
        for entry in &out.applied {
            if let Some(asker) = entry
                .proposal
                .and_then(|proposal| self.topics.applied(proposal))
            {
                let outcome = entry.outcome.clone().map(|_| ()).map_err(Into::into);
                self.answer_topic(asker, outcome, &mut outbox);
            }
            let Some(node) = entry
                .proposal
                .and_then(|proposal| self.registrations.remove(&proposal))
            else {
                continue;
            };
            if node == self.node {
                self.membership.registered(self.now_ms());
            } else {
                outbox.push(
                    self.node,
                    node,
                    NodeMessage::Registered {
                        applied_index: entry.index,
                    },
                );
            }
        }
        if !self.controller.quorum().is_leader() {
            // Proposals of a deposed leader may never apply; their nodes register again.
            self.registrations.clear();
        }
        // Clients ask again (the new leader) for topics whose proposals were lost.
        let deposed = !self.controller.quorum().is_leader();
        for asker in self.topics.expire(self.now_ms(), deposed) {
            self.answer_topic(asker, Err(TopicRefusal::Lost), &mut outbox);
        }
        for (to, frame) in outbox.frames {
            if let Err(error) = self.links.send(to, frame.finish()) {
                tracing::debug!(%error, "controller frame dropped");
                self.controller.quorum_mut().unreachable(to);
            }
        }
        self.publish();
        Ok(())
    }

    fn publish(&mut self) {
        let now = self.now_ms();
        let applied_index = self.controller.quorum().applied_index();
        let leader = self.controller.quorum().leader();
        let registered = self.membership.is_registered();
        let lease = self
            .membership
            .lease(now, applied_index)
            .map(|lease| lease.until_ms);
        let connected: Vec<NodeId> = self
            .links
            .peers()
            .filter(|peer| self.links.connected(*peer))
            .collect();
        let key = (applied_index, leader, registered, lease, connected);
        if self.published.as_ref() == Some(&key) {
            return;
        }
        let (_, _, _, _, connected) = key.clone();
        self.handle.publish(ClusterView {
            node: self.node,
            state: Arc::new(self.controller.state().clone()),
            applied_index,
            leader,
            registered,
            lease_until: lease.map(|until| self.started + Duration::from_millis(until)),
            connected,
        });
        self.published = Some(key);
    }
}

fn replica_report(report: &WireReport) -> Option<ReplicaReport> {
    Some(ReplicaReport {
        epoch: ChainEpoch::new(report.epoch),
        durable_end: strand_engine::Offset::new(report.durable_end)?,
        committed: strand_engine::Offset::new(report.committed)?,
        committed_in: ChainEpoch::new(report.committed_in),
    })
}

impl From<HeartbeatAnswer> for WireAnswer {
    fn from(answer: HeartbeatAnswer) -> WireAnswer {
        match answer {
            HeartbeatAnswer::Lease {
                lease_ms,
                applied_index,
            } => WireAnswer::Lease {
                lease_ms,
                applied_index,
            },
            HeartbeatAnswer::Unregistered => WireAnswer::Unregistered,
            HeartbeatAnswer::NotLeader { leader } => WireAnswer::NotLeader { leader },
        }
    }
}

impl From<WireAnswer> for HeartbeatAnswer {
    fn from(answer: WireAnswer) -> HeartbeatAnswer {
        match answer {
            WireAnswer::Lease {
                lease_ms,
                applied_index,
            } => HeartbeatAnswer::Lease {
                lease_ms,
                applied_index,
            },
            WireAnswer::Unregistered => HeartbeatAnswer::Unregistered,
            WireAnswer::NotLeader { leader } => HeartbeatAnswer::NotLeader { leader },
        }
    }
}

/// `host:port` as an [`Endpoint`].
pub fn parse_endpoint(address: &str) -> Result<Endpoint, String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} is not HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{address:?} has no valid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{address:?} has no host"));
    }
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

fn describe_peers(peers: &BTreeMap<NodeId, String>) -> String {
    peers
        .iter()
        .map(|(node, address)| format!("{}={address}", node.value()))
        .collect::<Vec<_>>()
        .join(",")
}
