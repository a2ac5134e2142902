//! One shard's chain driver: a task on the shard that runs a [`Replica`] for every
//! partition the shard owns and this node is attached to, and carries out what the
//! replicas ask of their host against the shard's engine:
//!
//! - `Append` queues a follower's append at the head's offsets (in order, so the log
//!   stores them in order); a head's own batches were stored before the replica took them
//!   (the engine assigns offsets and checks idempotent producers first), and are skipped;
//! - `Sync` waits for the durability answers of every append queued since the last one,
//!   after storing the attached epoch if it changed, then reports the sync done;
//! - `Truncate` cuts the engine's log; `Read` reads durable batches back for forwarding;
//! - `Committed` raises the engine's high watermark and answers the head's producers;
//! - `Send` adds the message to a frame for its peer, sent when the pass ends.
//!
//! It ticks every [`TICK`]: it follows the controller's view (chains, the node's lease,
//! topics the engine does not hold yet, which shard 0 creates), ticks the replicas for
//! their resends, and publishes their reports for the heartbeat.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use strand_engine::topic_config::TOPIC_CONFIGS;
use strand_engine::{
    AppendError, AppendOutcome, BatchHeader, ConfigChange, DurableAnswer, HeadAppend, Offset,
    ReadLimit, Router, TopicSpec, ValidatedBatch,
};

use super::entry::{epoch_of, leader_epoch};
use super::hub::{ChainHub, ProduceError, ShardInbound};
use super::state_file::{PartitionRef, StateFile, StoredReplica};
use super::wire::{BATCH_BYTES_MAX, push_message};
use crate::chain::{Action, Chain, Envelope, Limits, Message, Recovered, Replica};
use crate::controller::ClusterState;
use crate::host::{ClusterView, ControllerHandle};
use crate::ids::{ChainEpoch, NodeId};
use crate::transport::{FrameBuilder, WireReport};

/// How often the driver ticks its replicas and looks at the controller's view.
pub const TICK: Duration = Duration::from_millis(20);

/// How often a changed committed offset (alone) is stored.
const STORE_COMMITTED_EVERY: Duration = Duration::from_secs(1);

/// Bytes read back per `Read`.
const READ_BYTES_MAX: usize = 1 << 20;

/// Inbound messages handled per pass before frames go out and the clock is looked at.
const INBOUND_PER_PASS_MAX: usize = 256;

/// Chain payload per frame: a frame is sent once it holds this much.
const FRAME_PAYLOAD_MAX: usize = 4 << 20;

/// Runs the chain driver of the router's shard until the shard stops.
pub async fn run_shard(router: Router, handle: ControllerHandle) {
    let hub = handle.chains().clone();
    let shard = router.shard().index();
    let Some(inbox) = hub.take_inbox(shard) else {
        return;
    };
    let loaded = match StateFile::load_all(hub.state_dir()) {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(%error, "cannot read the replicas' state; chains stay closed");
            return;
        }
    };
    let (events, completed) = flume::unbounded();
    let mut driver = Driver {
        node: hub.node(),
        shard,
        state: StateFile::new(hub.state_dir(), shard),
        hub,
        router,
        handle,
        slots: HashMap::new(),
        ids: HashMap::new(),
        view_index: None,
        lease_valid: false,
        stored: BTreeMap::new(),
        loaded,
        committed_dirty: false,
        last_store: Instant::now(),
        frames: BTreeMap::new(),
        events,
        replicated: HashSet::new(),
        configured: HashMap::new(),
    };
    driver.replicated = driver.loaded.keys().map(|key| key.0).collect();
    let mut next_tick = Instant::now();
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let woke = futures::future::select(
            futures::future::select(inbox.recv_async(), completed.recv_async()),
            Box::pin(glommio::timer::sleep(wait)),
        )
        .await;
        match woke {
            futures::future::Either::Left((futures::future::Either::Left((message, _)), _)) => {
                let Ok(message) = message else { return };
                driver.inbound(message).await;
                for message in inbox.try_iter().take(INBOUND_PER_PASS_MAX) {
                    driver.inbound(message).await;
                }
            }
            futures::future::Either::Left((futures::future::Either::Right((event, _)), _)) => {
                if let Ok(event) = event {
                    driver.event(event).await;
                }
            }
            futures::future::Either::Right(_) => {}
        }
        for event in completed.try_iter().take(INBOUND_PER_PASS_MAX) {
            driver.event(event).await;
        }
        if Instant::now() >= next_tick {
            driver.tick().await;
            next_tick = Instant::now() + TICK;
        }
        driver.flush_frames();
    }
}

/// A spawned wait finished.
enum Event {
    Synced {
        partition: PartitionRef,
        end: Offset,
        durable: bool,
    },
    Read {
        partition: PartitionRef,
        start: Offset,
        entries: Result<Vec<ValidatedBatch>, String>,
    },
}

/// A producer waiting for its batch to commit.
struct Waiter {
    base: Offset,
    last: Offset,
    reply: oneshot::Sender<Result<AppendOutcome, ProduceError>>,
}

/// One partition's replica and what the driver holds for it.
struct Slot {
    topic: String,
    index: u32,
    replica: Replica<ValidatedBatch>,
    /// Durability answers of appends queued since the last sync began.
    durable: Vec<DurableAnswer>,
    /// The head stored every batch below this itself (the replica's `Append` of them is
    /// already done).
    head_stored_end: Offset,
    waiters: VecDeque<Waiter>,
    /// The epoch this node heads the chain in and has committed in, as last published.
    ready: Option<u64>,
    /// The committed offset the engine was last given.
    engine_committed: Offset,
}

struct Driver {
    node: NodeId,
    shard: usize,
    hub: Arc<ChainHub>,
    router: Router,
    handle: ControllerHandle,
    slots: HashMap<PartitionRef, Slot>,
    /// Topic names to ids, as the controller's view has them.
    ids: HashMap<String, [u8; 16]>,
    view_index: Option<u64>,
    lease_valid: bool,
    state: StateFile,
    /// The state of this shard's replicas, as its file holds it.
    stored: BTreeMap<PartitionRef, StoredReplica>,
    /// Every shard's file as read at start (a partition may have moved between shards).
    loaded: BTreeMap<PartitionRef, StoredReplica>,
    committed_dirty: bool,
    last_store: Instant,
    frames: BTreeMap<NodeId, FrameBuilder>,
    events: flume::Sender<Event>,
    /// Topic ids this node replicated (seen in a view, or in the state file): deleted from
    /// the controller, they are deleted here too.
    replicated: HashSet<[u8; 16]>,
    /// The settings shard 0 last gave each topic, as the controller held them.
    configured: HashMap<[u8; 16], Vec<(String, String)>>,
}

impl Driver {
    async fn inbound(&mut self, message: ShardInbound) {
        match message {
            ShardInbound::Chain {
                from,
                partition,
                message,
            } => {
                let node = self.node;
                if let Some(slot) = self.slots.get_mut(&partition) {
                    slot.replica.receive(Envelope {
                        from,
                        to: node,
                        message,
                    });
                    self.drain(partition).await;
                }
            }
            ShardInbound::Produce {
                topic,
                partition,
                batch,
                reply,
            } => {
                let key = self.ids.get(&topic).map(|id| (*id, partition));
                match key.filter(|key| self.slots.contains_key(key)) {
                    Some(key) => self.produce(key, batch, reply).await,
                    None => {
                        let label = format!("{topic}-{partition}");
                        let _ = reply.send(Err(ProduceError::NoReplica(label)));
                    }
                }
            }
        }
    }

    /// A client's batch at this node, the head: the engine stores it (assigning offsets
    /// where the replica's log ends, and answering an idempotent producer's retry with
    /// the first copy's offsets), then the replica takes it and forwards it.
    async fn produce(
        &mut self,
        key: PartitionRef,
        batch: ValidatedBatch,
        reply: oneshot::Sender<Result<AppendOutcome, ProduceError>>,
    ) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        if batch.len() > BATCH_BYTES_MAX {
            // Peers take no larger batch (and a node frame holds it whole).
            let _ = reply.send(Err(ProduceError::Engine(AppendError::BatchTooLarge {
                partition: label(slot),
                len: batch.len(),
                max: BATCH_BYTES_MAX,
            })));
            return;
        }
        let epoch = match slot.replica.admit() {
            Ok(epoch) => epoch,
            Err(refused) => {
                let _ = reply.send(Err(refused.into()));
                return;
            }
        };
        let start = slot.replica.log_end();
        let stored = self
            .router
            .append_head(&slot.topic, slot.index, batch, leader_epoch(epoch), start)
            .await;
        let Some(slot) = self.slots.get_mut(&key) else {
            let _ = reply.send(Err(ProduceError::ShuttingDown));
            return;
        };
        match stored {
            Ok(HeadAppend::Stored { batch, durable }) => {
                let (base, last) = (batch.base_offset(), batch.last_offset());
                slot.durable.push(durable);
                slot.head_stored_end = last.plus(1);
                match slot.replica.append(batch) {
                    Ok(at) if at == base => {}
                    outcome => {
                        let _ = reply.send(Err(ProduceError::Deposed(label(slot))));
                        let reason = format!(
                            "the head's replica placed the batch at {outcome:?}, its log at {base}"
                        );
                        self.fail(key, &reason);
                        return;
                    }
                }
                slot.waiters.push_back(Waiter { base, last, reply });
            }
            Ok(HeadAppend::Duplicate { base, last }) => {
                if last < slot.replica.committed() {
                    let _ = reply.send(Ok(AppendOutcome {
                        base_offset: base,
                        last_offset: last,
                        log_start: Offset::ZERO,
                    }));
                } else {
                    slot.waiters.push_back(Waiter { base, last, reply });
                }
            }
            Err(error @ AppendError::NotAtLogEnd { .. }) => {
                let reason = error.to_string();
                let _ = reply.send(Err(ProduceError::Deposed(label(slot))));
                self.fail(key, &reason);
                return;
            }
            Err(error) => {
                let _ = reply.send(Err(error.into()));
            }
        }
        self.drain(key).await;
    }

    async fn event(&mut self, event: Event) {
        match event {
            Event::Synced {
                partition,
                end,
                durable,
            } => {
                let Some(slot) = self.slots.get_mut(&partition) else {
                    return;
                };
                if durable {
                    slot.replica.synced(end);
                    self.drain(partition).await;
                } else {
                    self.fail(partition, "an append it synced failed");
                }
            }
            Event::Read {
                partition,
                start,
                entries,
            } => {
                let Some(slot) = self.slots.get_mut(&partition) else {
                    return;
                };
                let entries = entries.unwrap_or_else(|error| {
                    tracing::warn!(topic = slot.topic, partition = slot.index, %error, "read for forwarding failed");
                    Vec::new()
                });
                slot.replica.read_done(start, entries);
                self.drain(partition).await;
            }
        }
    }

    /// Carries out what the partition's replica asks, in order, until it asks nothing.
    async fn drain(&mut self, key: PartitionRef) {
        loop {
            let Some(slot) = self.slots.get_mut(&key) else {
                return;
            };
            let actions = slot.replica.take_actions();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                if let Err(reason) = self.act(key, action).await {
                    self.fail(key, &reason);
                    return;
                }
            }
        }
    }

    /// One action; why not, when the engine refused it (the replica no longer matches its
    /// log) or the attached epoch could not be stored.
    async fn act(
        &mut self,
        key: PartitionRef,
        action: Action<ValidatedBatch>,
    ) -> Result<(), String> {
        if let Action::Sync {
            committed,
            attached_epoch,
            ..
        } = &action
        {
            let stored = StoredReplica {
                committed: committed.value(),
                attached_epoch: attached_epoch.map(ChainEpoch::value),
            };
            let held = self.stored.insert(key, stored);
            if held.map(|held| held.attached_epoch) != Some(stored.attached_epoch) {
                self.store()
                    .map_err(|error| format!("storing its attached epoch: {error}"))?;
            } else if held != Some(stored) {
                self.committed_dirty = true;
            }
        }
        let Some(slot) = self.slots.get_mut(&key) else {
            return Ok(());
        };
        match action {
            Action::Send(envelope) => self.send(key, &envelope),
            Action::Append { entries, .. } => {
                for entry in entries {
                    if entry.last_offset() < slot.head_stored_end {
                        continue;
                    }
                    match self
                        .router
                        .queue_replica_append(&slot.topic, slot.index, entry)
                        .await
                    {
                        Ok(durable) => slot.durable.push(durable),
                        Err(error) => return Err(format!("appending a follower's batch: {error}")),
                    }
                }
            }
            Action::Sync { end, .. } => {
                // The attached epoch was stored above, before the sync can be reported.
                let waits = std::mem::take(&mut slot.durable);
                let events = self.events.clone();
                glommio::spawn_local(async move {
                    let mut durable = true;
                    for wait in waits {
                        durable &= matches!(wait.await, Ok(Ok(_)));
                    }
                    let _ = events.send(Event::Synced {
                        partition: key,
                        end,
                        durable,
                    });
                })
                .detach();
            }
            Action::Truncate { end } => {
                slot.head_stored_end = slot.head_stored_end.min(end);
                if let Err(error) = self.router.truncate(&slot.topic, slot.index, end).await {
                    return Err(format!("cutting its log at {end}: {error}"));
                }
            }
            Action::Read { start } => {
                let router = self.router.clone();
                let events = self.events.clone();
                let topic = slot.topic.clone();
                let index = slot.index;
                glommio::spawn_local(async move {
                    let entries = read_entries(&router, &topic, index, start).await;
                    let _ = events.send(Event::Read {
                        partition: key,
                        start,
                        entries,
                    });
                })
                .detach();
            }
            Action::Committed(committed) => self.committed(key, committed).await,
        }
        Ok(())
    }

    /// Adds a chain message to its peer's frame, sending the frame first when the
    /// message's entries would not fit in it, and once it holds enough.
    fn send(&mut self, key: PartitionRef, envelope: &Envelope<ValidatedBatch>) {
        let bytes = match &envelope.message {
            Message::Append { entries, .. } => entries.iter().map(ValidatedBatch::len).sum(),
            Message::Ack { .. } => 0,
        };
        if self
            .frames
            .get(&envelope.to)
            .is_some_and(|builder| !builder.fits(bytes))
        {
            let full = self.frames.remove(&envelope.to).expect("just looked");
            send_frame(&self.hub, envelope.to, full);
        }
        let builder = self
            .frames
            .entry(envelope.to)
            .or_insert_with(|| FrameBuilder::new(self.node, envelope.to));
        push_message(builder, key.0, key.1, &envelope.message);
        if builder.payload_len() >= FRAME_PAYLOAD_MAX {
            let full = self.frames.remove(&envelope.to).expect("just used");
            send_frame(&self.hub, envelope.to, full);
        }
    }

    /// Offsets below `committed` are committed: the engine's high watermark rises and the
    /// producers waiting for them are answered.
    async fn committed(&mut self, key: PartitionRef, committed: Offset) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        slot.engine_committed = slot.engine_committed.max(committed);
        let log_start = match self
            .router
            .set_committed(&slot.topic, slot.index, committed)
            .await
        {
            Ok(offsets) => offsets.log_start,
            Err(error) => {
                tracing::warn!(topic = slot.topic, partition = slot.index, %error, "committed offset not set");
                Offset::ZERO
            }
        };
        while slot
            .waiters
            .front()
            .is_some_and(|waiter| waiter.last < committed)
        {
            let waiter = slot.waiters.pop_front().expect("looked at");
            let _ = waiter.reply.send(Ok(AppendOutcome {
                base_offset: waiter.base,
                last_offset: waiter.last,
                log_start,
            }));
        }
    }

    /// A member learns the committed offset from its upstream's messages: its engine's
    /// high watermark follows (consumers of a member, and a member that becomes head,
    /// read what it knows is committed).
    async fn follow_committed(&mut self, key: PartitionRef) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        let known = slot.replica.committed();
        if known <= slot.engine_committed {
            return;
        }
        slot.engine_committed = known;
        if let Err(error) = self
            .router
            .set_committed(&slot.topic, slot.index, known)
            .await
        {
            tracing::warn!(topic = slot.topic, partition = slot.index, %error, "committed offset not set");
        }
    }

    fn flush_frames(&mut self) {
        for (peer, frame) in std::mem::take(&mut self.frames) {
            send_frame(&self.hub, peer, frame);
        }
    }

    /// Stores every replica's state now (blocking the shard for a write and two fsyncs:
    /// once per attached-epoch change, at most once a second otherwise).
    fn store(&mut self) -> std::io::Result<()> {
        self.state.store(&self.stored)?;
        self.committed_dirty = false;
        self.last_store = Instant::now();
        Ok(())
    }

    /// The periodic work: follow the view, tick the replicas, report.
    async fn tick(&mut self) {
        if self.hub.failure().is_some() {
            return; // the node is stopping
        }
        let view = self.handle.view();
        if self.view_index != Some(view.applied_index) && view.registered {
            let complete = self.follow(&view).await;
            self.view_index = complete.then_some(view.applied_index);
        }
        let lease_valid = view.lease_until.is_some_and(|until| until > Instant::now());
        let lease_changed = lease_valid != self.lease_valid;
        self.lease_valid = lease_valid;
        let keys: Vec<PartitionRef> = self.slots.keys().copied().collect();
        let mut reports = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(slot) = self.slots.get_mut(&key) else {
                continue;
            };
            if lease_changed {
                slot.replica.set_lease(lease_valid);
            }
            slot.replica.tick();
            self.drain(key).await;
            self.follow_committed(key).await;
            let Some(slot) = self.slots.get_mut(&key) else {
                continue;
            };
            let ready = head_ready(&slot.replica, self.node, lease_valid);
            if ready != slot.ready {
                slot.ready = ready;
                self.hub.set_head_ready(key, ready);
            }
            if let Some(chain) = slot.replica.chain()
                && chain.attached(self.node).is_some()
            {
                reports.push(WireReport {
                    topic_id: key.0,
                    partition: key.1,
                    epoch: chain.epoch.value(),
                    durable_end: slot.replica.durable_end().value(),
                    committed: slot.replica.committed().value(),
                    committed_in: slot.replica.committed_in().value(),
                });
            }
        }
        self.hub.report(self.shard, reports);
        if self.committed_dirty
            && self.last_store.elapsed() >= STORE_COMMITTED_EVERY
            && let Err(error) = self.store()
        {
            // Only committed offsets changed: a lower one read back is safe; retried later.
            tracing::warn!(%error, "cannot store the replicas' committed offsets");
        }
    }

    /// Brings the replicas to the chains of the view: opens the partitions of this shard
    /// this node is attached to, gives every replica its chain, and (shard 0) creates the
    /// topics the engine does not hold yet.
    ///
    /// False when something is left to do (a topic this shard's metadata does not hold
    /// yet, a replica that could not open, a topic not created): the next tick tries again.
    async fn follow(&mut self, view: &ClusterView) -> bool {
        let state: &ClusterState = &view.state;
        let mut complete = true;
        self.ids = state
            .topics()
            .iter()
            .map(|(name, topic)| (name.clone(), topic.id))
            .collect();
        self.forget_deleted(state);
        if self.shard == 0 {
            self.delete_topics(state).await;
            complete &= self.create_topics(state).await;
            complete &= self.configure_topics(state).await;
        }
        for (name, topic) in state.topics() {
            for (index, record) in topic.partitions.iter().enumerate() {
                let index = u32::try_from(index).expect("partition counts fit u32");
                let key = (topic.id, index);
                let chain = &record.chain;
                if !self.slots.contains_key(&key) {
                    if chain.attached(self.node).is_none() {
                        continue;
                    }
                    let Some((_, owner)) = self.router.resolve(name, index) else {
                        complete = false; // not in this shard's metadata yet
                        continue;
                    };
                    if owner.index() != self.shard {
                        continue;
                    }
                    if !self.open(key, name, index, chain.epoch).await {
                        complete = false;
                        continue;
                    }
                }
                self.reconfigure(key, chain.clone()).await;
            }
        }
        complete
    }

    async fn reconfigure(&mut self, key: PartitionRef, chain: Chain) {
        let node = self.node;
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        let known = slot.replica.chain().map(|chain| chain.epoch);
        if known.is_none_or(|known| known < chain.epoch) {
            let members: Vec<u32> = chain.members.iter().map(|m| m.node.value()).collect();
            let learner = chain.learner.map(|l| l.node.value());
            tracing::info!(
                topic = slot.topic,
                partition = slot.index,
                epoch = chain.epoch.value(),
                ?members,
                ?learner,
                "chain"
            );
        }
        slot.replica.reconfigure(chain);
        let head = slot
            .replica
            .chain()
            .is_some_and(|chain| chain.head() == node && chain.is_member(node));
        if !head {
            let partition = label(slot);
            for waiter in slot.waiters.drain(..) {
                let _ = waiter
                    .reply
                    .send(Err(ProduceError::Deposed(partition.clone())));
            }
        }
        self.drain(key).await;
    }

    /// Opens a replica over the engine's log of the partition, with what the state file
    /// holds; chains older than `epoch_min` (from before this node's registration) are
    /// ignored. False when the engine cannot say what the log holds.
    async fn open(
        &mut self,
        key: PartitionRef,
        topic: &str,
        index: u32,
        epoch_min: ChainEpoch,
    ) -> bool {
        let offsets = match self.router.offsets(topic, index).await {
            Ok(offsets) => offsets,
            Err(error) => {
                tracing::warn!(topic, partition = index, %error, "replica not opened");
                return false;
            }
        };
        let log_epochs = match scan_epochs(
            &self.router,
            topic,
            index,
            offsets.log_start,
            offsets.log_end,
        )
        .await
        {
            Ok(epochs) => epochs,
            Err(error) => {
                tracing::warn!(topic, partition = index, %error, "replica not opened");
                return false;
            }
        };
        // This shard's own state first (a replica reopened), else what the files held at
        // start, kept in this shard's file from now on.
        let stored = match (self.stored.get(&key), self.loaded.get(&key)) {
            (Some(&stored), _) => stored,
            (None, Some(&stored)) => {
                self.stored.insert(key, stored);
                stored
            }
            (None, None) => StoredReplica::default(),
        };
        let committed = Offset::new(stored.committed)
            .unwrap_or(Offset::ZERO)
            .min(offsets.log_end);
        let recovered = Recovered {
            log_end: offsets.log_end,
            log_epochs,
            committed,
            attached_epoch: stored.attached_epoch.map(ChainEpoch::new),
        };
        if let Err(error) = self.router.set_committed(topic, index, committed).await {
            tracing::warn!(topic, partition = index, %error, "replica not opened");
            return false;
        }
        let mut replica = Replica::recover(self.node, Limits::default(), recovered, epoch_min);
        replica.set_lease(self.lease_valid);
        self.slots.insert(
            key,
            Slot {
                topic: topic.to_owned(),
                index,
                replica,
                durable: Vec::new(),
                head_stored_end: Offset::ZERO,
                waiters: VecDeque::new(),
                ready: None,
                engine_committed: committed,
            },
        );
        self.hub.route(key, self.shard);
        tracing::info!(topic, partition = index, log_end = %offsets.log_end, %committed, "replica open");
        true
    }

    /// The replica's log refused what it asked (a disk failure, or a log that parted from
    /// the replica): it can no longer keep its promises, so it stops at once (its
    /// producers are told to retry elsewhere) and the node stops too, as after a crash.
    /// Restarted, the node registers again, which detaches it from its chains until it
    /// caught up: starting the replica over in place would reuse the chain epoch's message
    /// numbers and could count unsynced entries as durable.
    fn fail(&mut self, key: PartitionRef, reason: &str) {
        let Some(slot) = self.slots.remove(&key) else {
            return;
        };
        self.hub.set_head_ready(key, None);
        let partition = label(&slot);
        for waiter in slot.waiters {
            let _ = waiter
                .reply
                .send(Err(ProduceError::Deposed(partition.clone())));
        }
        tracing::error!(partition, reason, "replica failed; the node stops");
        self.hub.fail(format!("partition {partition}: {reason}"));
    }

    /// Drops the replicas of topics the controller deleted, and their stored state.
    fn forget_deleted(&mut self, state: &ClusterState) {
        let live: HashSet<[u8; 16]> = state.topics().values().map(|topic| topic.id).collect();
        let gone: Vec<PartitionRef> = self
            .slots
            .keys()
            .filter(|key| !live.contains(&key.0))
            .copied()
            .collect();
        for key in &gone {
            let Some(slot) = self.slots.remove(key) else {
                continue;
            };
            let partition = label(&slot);
            for waiter in slot.waiters {
                let _ = waiter
                    .reply
                    .send(Err(ProduceError::NoReplica(partition.clone())));
            }
            self.hub.set_head_ready(*key, None);
            tracing::info!(partition, "replica closed: its topic was deleted");
        }
        let stored = self.stored.len();
        self.stored.retain(|key, _| live.contains(&key.0));
        if self.stored.len() != stored
            && let Err(error) = self.store()
        {
            tracing::warn!(%error, "cannot store the replicas' state");
        }
        self.replicated.extend(live);
    }

    /// Deletes from the engine the topics this node replicated that the controller
    /// deleted (a topic it never replicated, made before the node joined a cluster, is
    /// left alone).
    async fn delete_topics(&self, state: &ClusterState) {
        let live: HashSet<[u8; 16]> = state.topics().values().map(|topic| topic.id).collect();
        let metadata = self.router.metadata();
        let deleted: Vec<String> = metadata
            .topics()
            .filter(|topic| self.replicated.contains(&topic.uuid) && !live.contains(&topic.uuid))
            .map(|topic| topic.name.clone())
            .collect();
        for name in deleted {
            match self.router.delete_topic(&name).await {
                Ok(()) => tracing::info!(topic = name, "topic deleted through the controller"),
                Err(error) => tracing::warn!(topic = name, %error, "cannot delete the topic here"),
            }
        }
    }

    /// Creates in the engine the topics of the view it lacks (with the controller's topic
    /// id, so every node names a topic alike), and the partitions added to them.
    async fn create_topics(&self, state: &ClusterState) -> bool {
        let mut complete = true;
        let metadata = self.router.metadata();
        for (name, topic) in state.topics() {
            let partitions = u32::try_from(topic.partitions.len()).expect("fits u32");
            let outcome = match metadata.topic(name) {
                None => self
                    .router
                    .create_topic(TopicSpec {
                        name: name.clone(),
                        partitions,
                        configs: topic.configs.clone(),
                        id: Some(topic.id),
                    })
                    .await
                    .map(|_| ()),
                Some(held) if held.uuid != topic.id => {
                    tracing::error!(
                        topic = name,
                        "a local topic of that name has another id; not replicated"
                    );
                    continue;
                }
                Some(held) if held.partitions.len() < topic.partitions.len() => self
                    .router
                    .create_partitions(name, partitions)
                    .await
                    .map(|_| ()),
                Some(_) => continue,
            };
            if let Err(error) = outcome {
                tracing::warn!(topic = name, %error, "cannot create the topic's partitions here");
                complete = false;
            }
        }
        complete
    }
}

impl Driver {
    /// Gives the engine's topics the settings the controller holds for them, when they
    /// changed since it last did (every setting: those not named go back to the default).
    async fn configure_topics(&mut self, state: &ClusterState) -> bool {
        let mut complete = true;
        let metadata = self.router.metadata();
        for (name, topic) in state.topics() {
            let here = metadata
                .topic(name)
                .is_some_and(|held| held.uuid == topic.id);
            if !here || self.configured.get(&topic.id) == Some(&topic.configs) {
                continue;
            }
            let changes = TOPIC_CONFIGS
                .iter()
                .map(|def| def.key)
                .map(|key| {
                    let set = topic.configs.iter().find(|(held, _)| held == key);
                    match set {
                        Some((key, value)) => ConfigChange::Set {
                            key: key.clone(),
                            value: value.clone(),
                        },
                        None => ConfigChange::Reset {
                            key: key.to_owned(),
                        },
                    }
                })
                .collect();
            match self.router.alter_topic_config(name, changes).await {
                Ok(_) => {
                    self.configured.insert(topic.id, topic.configs.clone());
                }
                Err(error) => {
                    tracing::warn!(topic = name, %error, "cannot give the topic its settings here");
                    complete = false;
                }
            }
        }
        self.configured
            .retain(|id, _| state.topics().values().any(|topic| topic.id == *id));
        complete
    }
}

/// The chain epoch in which `replica` heads its chain with everything it held when it took
/// over committed (and its engine's high watermark there), if it does.
fn head_ready(replica: &Replica<ValidatedBatch>, node: NodeId, lease_valid: bool) -> Option<u64> {
    let chain = replica.chain()?;
    let heads = chain.head() == node && chain.is_member(node);
    let settled = replica.committed_in() == chain.epoch || replica.committed() >= replica.log_end();
    (heads && lease_valid && settled).then_some(chain.epoch.value())
}

fn send_frame(hub: &ChainHub, peer: NodeId, frame: FrameBuilder) {
    if let Err(error) = hub.send(peer, frame.finish()) {
        tracing::debug!(%error, "chain frame dropped (the protocol resends)");
    }
}

fn label(slot: &Slot) -> String {
    format!("{}-{}", slot.topic, slot.index)
}

/// The whole batches of `bytes`, as stored.
fn batches(bytes: &[u8]) -> Result<Vec<ValidatedBatch>, String> {
    let bytes = bytes::Bytes::copy_from_slice(bytes);
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let header = BatchHeader::parse(&bytes[at..]).map_err(|error| error.to_string())?;
        let end = at + header.total_len();
        if end > bytes.len() {
            break;
        }
        out.push(
            ValidatedBatch::stored(bytes.slice(at..end), BATCH_BYTES_MAX)
                .map_err(|error| error.to_string())?,
        );
        at = end;
    }
    Ok(out)
}

async fn read_entries(
    router: &Router,
    topic: &str,
    index: u32,
    start: Offset,
) -> Result<Vec<ValidatedBatch>, String> {
    let read = router
        .read_up_to(topic, index, start, READ_BYTES_MAX, ReadLimit::Durable)
        .await
        .map_err(|error| error.to_string())?;
    let mut entries = batches(&read.bytes)?;
    entries.retain(|batch| batch.base_offset() >= start);
    Ok(entries)
}

/// Where each chain epoch's batches start in the log, read from the batches' leader
/// epochs.
async fn scan_epochs(
    router: &Router,
    topic: &str,
    index: u32,
    log_start: Offset,
    log_end: Offset,
) -> Result<Vec<(ChainEpoch, Offset)>, String> {
    let mut epochs: Vec<(ChainEpoch, Offset)> = Vec::new();
    let mut from = log_start;
    while from < log_end {
        let read = router
            .read_up_to(topic, index, from, READ_BYTES_MAX, ReadLimit::Durable)
            .await
            .map_err(|error| error.to_string())?;
        let found = batches(&read.bytes)?;
        let Some(last) = found.last() else {
            break;
        };
        let next = last.last_offset().plus(1);
        for batch in found {
            let epoch = epoch_of(batch.header());
            if epochs.last().is_none_or(|(held, _)| *held != epoch) {
                epochs.push((epoch, batch.base_offset().max(log_start)));
            }
        }
        from = next;
    }
    Ok(epochs)
}
