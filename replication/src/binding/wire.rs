//! Chain messages to and from node frames: entries travel as spans of the frame's
//! payload (the batch bytes as stored), and come back as batches validated again (CRC
//! included) by the receiver, as a client's would be.

use strand_engine::{BatchError, Offset, ValidatedBatch};

use crate::chain::{Cut, Message};
use crate::ids::ChainEpoch;
use crate::transport::{ChainWire, Frame, FrameBuilder, NodeMessage, Span};

/// The largest batch a node accepts from a peer (as from a client: the engine's bound on
/// a whole request is far above any batch a topic allows).
pub const BATCH_BYTES_MAX: usize = 16 << 20;

/// Adds a chain message of partition `partition` of topic `topic_id` to a frame.
pub fn push_message(
    frame: &mut FrameBuilder,
    topic_id: [u8; 16],
    partition: u32,
    message: &Message<ValidatedBatch>,
) {
    let wire = match message {
        Message::Append {
            epoch,
            seq,
            start,
            entries,
            committed,
            cut,
        } => {
            let entries = entries
                .iter()
                .map(|batch| {
                    let [prefix, rest] = batch.clone().into_parts();
                    let first = frame.payload(prefix);
                    let second = frame.payload(rest);
                    Span {
                        offset: first.offset,
                        len: first.len + second.len,
                    }
                })
                .collect();
            ChainWire::Append {
                epoch: epoch.value(),
                seq: *seq,
                start: start.value(),
                entries,
                committed: committed.value(),
                cut: cut.map(|cut| (cut.id, cut.end.value())),
            }
        }
        Message::Ack {
            epoch,
            seq,
            log_end,
            last_epoch,
            acked,
            seen,
        } => ChainWire::Ack {
            epoch: epoch.value(),
            seq: *seq,
            log_end: log_end.value(),
            last_epoch: last_epoch.map(ChainEpoch::value),
            acked: acked.value(),
            seen: *seen,
        },
    };
    frame.push(NodeMessage::Chain {
        topic_id,
        partition,
        message: wire,
    });
}

/// Why a chain message from a peer was dropped.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("a negative offset {0} in a chain message")]
    Offset(i64),
    #[error("a batch in a chain message: {0}")]
    Batch(#[from] BatchError),
    #[error("a batch at {got} in a chain message whose entries continue at {expected}")]
    Misplaced { expected: i64, got: i64 },
    #[error("an acknowledgement of {acked} past the sender's log end {log_end}")]
    AckedPastEnd { acked: i64, log_end: i64 },
}

fn offset(value: i64) -> Result<Offset, WireError> {
    Offset::new(value).ok_or(WireError::Offset(value))
}

/// Reads a chain message out of a frame.
pub fn read_message(frame: &Frame, wire: &ChainWire) -> Result<Message<ValidatedBatch>, WireError> {
    Ok(match wire {
        ChainWire::Append {
            epoch,
            seq,
            start,
            entries,
            committed,
            cut,
        } => {
            let start = offset(*start)?;
            let mut next = start;
            let mut batches = Vec::with_capacity(entries.len());
            for span in entries {
                let batch = ValidatedBatch::stored(frame.bytes(*span), BATCH_BYTES_MAX)?;
                if batch.base_offset() != next {
                    return Err(WireError::Misplaced {
                        expected: next.value(),
                        got: batch.base_offset().value(),
                    });
                }
                next = batch.last_offset().plus(1);
                batches.push(batch);
            }
            let cut = match cut {
                Some((id, end)) => Some(Cut {
                    id: *id,
                    end: offset(*end)?,
                }),
                None => None,
            };
            Message::Append {
                epoch: ChainEpoch::new(*epoch),
                seq: *seq,
                start,
                entries: batches,
                committed: offset(*committed)?,
                cut,
            }
        }
        ChainWire::Ack {
            epoch,
            seq,
            log_end,
            last_epoch,
            acked,
            seen,
        } if acked <= log_end => Message::Ack {
            epoch: ChainEpoch::new(*epoch),
            seq: *seq,
            log_end: offset(*log_end)?,
            last_epoch: last_epoch.map(ChainEpoch::new),
            acked: offset(*acked)?,
            seen: *seen,
        },
        ChainWire::Ack { acked, log_end, .. } => {
            return Err(WireError::AckedPastEnd {
                acked: *acked,
                log_end: *log_end,
            });
        }
    })
}
