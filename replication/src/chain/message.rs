//! What a replica says to its neighbours and asks of its host.

use strand_engine::Offset;

use crate::ids::{ChainEpoch, NodeId};

/// A replication message between neighbours of one chain.
///
/// Each direction between two neighbours is a stream numbered by `seq` within an epoch: a
/// message not newer than the last one taken is stale (reordered or repeated) and dropped,
/// so the streams act in order even over several connections; a lost message is covered
/// by the resends on `tick`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<E> {
    /// Upstream to downstream: `entries`, the first at offset `start`, and the offsets the
    /// head knows are committed. With `cut`, the receiver first cuts its log (once per cut):
    /// it holds entries the sender does not (see [`Message::Ack`]), never committed.
    Append {
        epoch: ChainEpoch,
        seq: u64,
        start: Offset,
        entries: Vec<E>,
        committed: Offset,
        cut: Option<Cut>,
    },
    /// Downstream to upstream: the sender's log ends at `log_end` with an entry of
    /// `last_epoch`, every offset below `acked` is durable on the sender and on every
    /// member after it, and `seen` is the last `Append` it took. The first one of an epoch
    /// is the handshake: the upstream checks where the two logs part (by the epochs of their
    /// entries, as Kafka's leader epochs) and resumes there.
    Ack {
        epoch: ChainEpoch,
        seq: u64,
        log_end: Offset,
        last_epoch: Option<ChainEpoch>,
        acked: Offset,
        seen: u64,
    },
}

impl<E> Message<E> {
    pub fn epoch(&self) -> ChainEpoch {
        match self {
            Message::Append { epoch, .. } | Message::Ack { epoch, .. } => *epoch,
        }
    }
}

/// Where a successor must cut its log. Every `Append` repeats it until the successor
/// acknowledges one that carried it, and `id` (the first such `Append`'s `seq`) makes the
/// successor cut only once: entries it takes after the cut are the sender's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub id: u64,
    pub end: Offset,
}

/// A message with its sender and receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<E> {
    pub from: NodeId,
    pub to: NodeId,
    pub message: Message<E>,
}

/// What the host must do for a replica, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<E> {
    /// Deliver a message (it may be lost: the protocol resends).
    Send(Envelope<E>),
    /// Append `entries` to the local log, the first at `start` (the log's end).
    Append { start: Offset, entries: Vec<E> },
    /// Make the log durable up to `end` and store `committed` and `attached_epoch` beside
    /// it (for [`Replica::recover`](super::Replica::recover)), then call
    /// [`Replica::synced`](super::Replica::synced) with `end`.
    Sync {
        end: Offset,
        committed: Offset,
        attached_epoch: Option<ChainEpoch>,
    },
    /// Cut the local log at `end`: every entry at or past it goes.
    Truncate { end: Offset },
    /// Read entries from `start` of the local log (as many as is convenient) and hand them
    /// to [`Replica::read_done`](super::Replica::read_done).
    Read { start: Offset },
    /// Offsets below this are committed: answer producers waiting for them, let fetches
    /// read them. Only the head says this, and the value never goes back.
    Committed(Offset),
}
