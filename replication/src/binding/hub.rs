//! What a node's chain drivers (one per shard) share with the rest of the process: an
//! inbox per shard, where chain messages from peers and produce requests from the Kafka
//! front end arrive; the routes from partitions to the shards that drive them; the
//! drivers' replica reports, which ride on the node's heartbeats; and the links to peers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use bytes::Bytes;
use futures::channel::oneshot;
use strand_engine::{AppendError, AppendOutcome, ValidatedBatch};

use super::state_file::PartitionRef;
use crate::chain::{AppendRefused, Message};
use crate::ids::NodeId;
use crate::transport::{Links, SendError, WireReport};

/// Messages waiting for one shard's driver, at most.
pub const SHARD_INBOX_MAX: usize = 4096;

/// What arrives for a shard's driver.
#[derive(Debug)]
pub enum ShardInbound {
    /// A chain message from a peer.
    Chain {
        from: NodeId,
        partition: PartitionRef,
        message: Message<ValidatedBatch>,
    },
    /// A client's batch for a partition this shard drives, answered once committed.
    Produce {
        topic: String,
        partition: u32,
        batch: ValidatedBatch,
        reply: oneshot::Sender<Result<AppendOutcome, ProduceError>>,
    },
}

/// Why a produce to a replicated partition was not acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// This node is not the head (or cannot use its lease): Kafka's NOT_LEADER_OR_FOLLOWER.
    #[error("{0}")]
    Refused(#[from] AppendRefused),
    /// The partition's replica is not open on this node (yet): LEADER_NOT_AVAILABLE.
    #[error("partition {0} has no replica on this node yet")]
    NoReplica(String),
    /// The chain changed before the batch committed; it may or may not survive (an
    /// idempotent producer's retry finds out): NOT_LEADER_OR_FOLLOWER.
    #[error("partition {0}: this node left the head of the chain before the batch committed")]
    Deposed(String),
    #[error(transparent)]
    Engine(#[from] AppendError),
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// The node's chain drivers' shared state.
#[derive(Debug)]
pub struct ChainHub {
    node: NodeId,
    state_dir: PathBuf,
    inboxes: Vec<flume::Sender<ShardInbound>>,
    receivers: Mutex<Vec<Option<flume::Receiver<ShardInbound>>>>,
    routes: RwLock<HashMap<PartitionRef, usize>>,
    reports: Mutex<BTreeMap<usize, Vec<WireReport>>>,
    /// Partitions this node heads and has committed in, with the chain epoch.
    ready: Mutex<HashMap<PartitionRef, u64>>,
    /// Why a replica failed, when one did: the node must stop.
    failure: Mutex<Option<String>>,
    links: OnceLock<Arc<Links>>,
}

impl ChainHub {
    /// A hub for `shards` drivers, keeping their state files under `state_dir`.
    pub fn new(node: NodeId, shards: usize, state_dir: &Path) -> ChainHub {
        let (inboxes, receivers) = (0..shards.max(1))
            .map(|_| {
                let (sender, receiver) = flume::bounded(SHARD_INBOX_MAX);
                (sender, Some(receiver))
            })
            .unzip();
        ChainHub {
            node,
            state_dir: state_dir.to_path_buf(),
            inboxes,
            receivers: Mutex::new(receivers),
            routes: RwLock::new(HashMap::new()),
            reports: Mutex::new(BTreeMap::new()),
            ready: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
            links: OnceLock::new(),
        }
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The links to peers, once the controller started them.
    pub fn set_links(&self, links: Arc<Links>) {
        let _ = self.links.set(links);
    }

    /// Shard `shard`'s inbox, for its driver (once).
    pub fn take_inbox(&self, shard: usize) -> Option<flume::Receiver<ShardInbound>> {
        self.receivers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(shard)?
            .take()
    }

    /// Records that shard `shard` drives `partition`.
    pub fn route(&self, partition: PartitionRef, shard: usize) {
        self.routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition, shard);
    }

    /// Hands a peer's chain message to the shard that drives its partition. Dropped when
    /// no shard drives it yet or the shard's inbox is full: the protocol resends.
    pub fn deliver(&self, from: NodeId, partition: PartitionRef, message: Message<ValidatedBatch>) {
        let shard = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .copied();
        let Some(inbox) = shard.and_then(|shard| self.inboxes.get(shard)) else {
            return;
        };
        let _ = inbox.try_send(ShardInbound::Chain {
            from,
            partition,
            message,
        });
    }

    /// Sends a client's batch to the driver of shard `shard`, waiting for room.
    pub async fn produce(
        &self,
        shard: usize,
        topic: &str,
        partition: u32,
        batch: ValidatedBatch,
    ) -> Result<AppendOutcome, ProduceError> {
        let inbox = self.inboxes.get(shard).ok_or(ProduceError::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        inbox
            .send_async(ShardInbound::Produce {
                topic: topic.to_owned(),
                partition,
                batch,
                reply,
            })
            .await
            .map_err(|_| ProduceError::ShuttingDown)?;
        answer.await.unwrap_or(Err(ProduceError::ShuttingDown))
    }

    /// Queues a frame of chain messages for `peer`.
    pub fn send(&self, peer: NodeId, frame: Vec<Bytes>) -> Result<(), SendError> {
        match self.links.get() {
            Some(links) => links.send_bulk(peer, frame),
            None => Err(SendError::UnknownPeer(peer)),
        }
    }

    /// Replaces shard `shard`'s replica reports.
    pub fn report(&self, shard: usize, reports: Vec<WireReport>) {
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(shard, reports);
    }

    /// Records whether this node heads `partition` and has committed as head in `epoch`
    /// (`None`: it does not).
    pub fn set_head_ready(&self, partition: PartitionRef, epoch: Option<u64>) {
        let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        match epoch {
            Some(epoch) => ready.insert(partition, epoch),
            None => ready.remove(&partition),
        };
    }

    /// The chain epoch in which this node heads `partition` and has committed: its log then
    /// holds everything committed before (what a group coordinator loads).
    pub fn head_ready(&self, partition: PartitionRef) -> Option<u64> {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .copied()
    }

    /// A replica failed for `reason`: the node must stop (the first reason is kept).
    pub fn fail(&self, reason: String) {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
    }

    /// Why a replica failed, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every shard's latest replica reports, for a heartbeat.
    pub fn reports(&self) -> Vec<WireReport> {
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .flatten()
            .copied()
            .collect()
    }
}
