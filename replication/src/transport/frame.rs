//! Node-to-node frames: an rkyv header describing many messages (controller traffic,
//! heartbeats, chain messages of many partitions) and one payload of raw bytes that the
//! messages point into, so record batches cross nodes as the bytes clients sent, never
//! re-encoded.
//!
//! Layout (`docs/format.md`, "Node frames"):
//! `[len: u32 LE][header_len: u32 LE][header_crc: u32 LE][header][payload]`, where `len`
//! counts everything after itself. The header is checked (CRC, then bytecheck) before use,
//! and every [`Span`] it holds must lie inside the payload; the payload's batches carry
//! their own CRCs, which the receiving engine checks as it would a client's.

use bytes::{Buf, Bytes};

use crate::controller::{Endpoint, TopicChange, TopicRefusal};
use crate::ids::NodeId;

/// The largest frame, header and payload together (a claim past it is refused before any
/// byte of it is buffered).
pub const FRAME_BYTES_MAX: usize = 32 << 20;

/// The largest header.
pub const HEADER_BYTES_MAX: usize = 4 << 20;

const PREFIX_LEN: usize = 12;

/// Bytes of the frame's payload: `len` bytes from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Span {
    pub offset: u32,
    pub len: u32,
}

/// A frame's header: who sends, who receives, and the messages.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FrameHeader {
    pub from: NodeId,
    pub to: NodeId,
    pub messages: Vec<NodeMessage>,
}

/// One message between nodes.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum NodeMessage {
    /// A controller quorum (Raft) message, protobuf-encoded in the payload.
    Controller {
        span: Span,
    },
    /// A node asks the controller leader to register it (once per start, and after a
    /// fence); `incarnation` tells its runs apart.
    Register {
        kafka: Endpoint,
        internal: Endpoint,
        incarnation: u64,
    },
    /// The registration is applied at `applied_index`.
    Registered {
        applied_index: u64,
    },
    /// The receiver is not the controller leader; `leader` is the one it knows of.
    RegisterRefused {
        leader: Option<NodeId>,
    },
    /// A heartbeat to the controller leader, numbered so its answer can be matched to
    /// when it was sent (the lease counts from then).
    Heartbeat {
        id: u64,
        reports: Vec<WireReport>,
    },
    HeartbeatAnswer {
        id: u64,
        answer: WireAnswer,
    },
    /// A node asks the controller leader for a topic change (a Kafka client asked it).
    ChangeTopics {
        id: u64,
        change: TopicChange,
    },
    /// The leader's answer to the node's `ChangeTopics` `id`: `None` once it is made.
    TopicAnswer {
        id: u64,
        refusal: Option<TopicRefusal>,
    },
    /// A chain replication message of one partition.
    Chain {
        topic_id: [u8; 16],
        partition: u32,
        message: ChainWire,
    },
}

/// A replica report in a heartbeat (see `controller::ReplicaReport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WireReport {
    pub topic_id: [u8; 16],
    pub partition: u32,
    pub epoch: u64,
    pub durable_end: i64,
    pub committed: i64,
    pub committed_in: u64,
}

/// The controller leader's answer to a heartbeat (see `controller::HeartbeatAnswer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum WireAnswer {
    Lease { lease_ms: u64, applied_index: u64 },
    Unregistered,
    NotLeader { leader: Option<NodeId> },
}

/// A chain message (see `chain::Message`), its entries as spans of the payload.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ChainWire {
    Append {
        epoch: u64,
        seq: u64,
        start: i64,
        entries: Vec<Span>,
        committed: i64,
        /// The cut's id and end.
        cut: Option<(u64, i64)>,
    },
    Ack {
        epoch: u64,
        seq: u64,
        log_end: i64,
        last_epoch: Option<u64>,
        acked: i64,
        seen: u64,
    },
}

/// Why bytes are not a frame. The connection that sent them is closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("a node frame of {len} bytes, more than {max}")]
    TooLong { len: usize, max: usize },
    #[error("a node frame header of {header_len} bytes in a frame of {len}")]
    HeaderLength { header_len: usize, len: usize },
    #[error("a node frame header fails its crc (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderCrc { stored: u32, computed: u32 },
    #[error("an undecodable node frame header: {0}")]
    Header(String),
    #[error("a span of {len} bytes at {offset} outside a payload of {payload_len}")]
    SpanOutside {
        offset: u32,
        len: u32,
        payload_len: usize,
    },
}

/// A decoded frame: its header, and the payload its spans point into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    payload: Bytes,
}

impl Frame {
    /// The bytes of `span` (checked to lie inside the payload when the frame was decoded),
    /// sharing the frame's memory.
    pub fn bytes(&self, span: Span) -> Bytes {
        let start = usize::try_from(span.offset).expect("spans are checked at decode");
        let end = start + usize::try_from(span.len).expect("spans are checked at decode");
        self.payload.slice(start..end)
    }

    /// Reads one frame from the front of `buf`, taking its bytes; `Ok(None)` when `buf`
    /// does not hold a whole frame yet (nothing is taken).
    pub fn decode(buf: &mut Bytes) -> Result<Option<Frame>, FrameError> {
        let Some(len) = frame_len(buf)? else {
            return Ok(None);
        };
        if buf.len() < 4 + len {
            return Ok(None);
        }
        let mut frame = buf.split_to(4 + len);
        frame.advance(4);
        let header_len = usize::try_from(frame.get_u32_le()).expect("u32 fits usize");
        let stored = frame.get_u32_le();
        if header_len > HEADER_BYTES_MAX || header_len > frame.len() {
            return Err(FrameError::HeaderLength { header_len, len });
        }
        let header_bytes = frame.split_to(header_len);
        let computed = crc32c::crc32c(&header_bytes);
        if computed != stored {
            return Err(FrameError::HeaderCrc { stored, computed });
        }
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(header_len);
        aligned.extend_from_slice(&header_bytes);
        let header = rkyv::from_bytes::<FrameHeader, rkyv::rancor::Error>(&aligned)
            .map_err(|error| FrameError::Header(error.to_string()))?;
        let frame = Frame {
            header,
            payload: frame,
        };
        frame.check_spans()?;
        Ok(Some(frame))
    }

    fn check_spans(&self) -> Result<(), FrameError> {
        let payload_len = self.payload.len();
        let check = |span: &Span| {
            let end = u64::from(span.offset) + u64::from(span.len);
            if end > u64::try_from(payload_len).expect("usize fits u64") {
                return Err(FrameError::SpanOutside {
                    offset: span.offset,
                    len: span.len,
                    payload_len,
                });
            }
            Ok(())
        };
        for message in &self.header.messages {
            match message {
                NodeMessage::Controller { span } => check(span)?,
                NodeMessage::Chain {
                    message: ChainWire::Append { entries, .. },
                    ..
                } => entries.iter().try_for_each(check)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// The length a frame's prefix claims, once its 4 bytes are there; refuses a claim past
/// [`FRAME_BYTES_MAX`] before anything is buffered for it.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = usize::try_from(u32::from_le_bytes(prefix.try_into().expect("4 bytes")))
        .expect("u32 fits usize");
    if len > FRAME_BYTES_MAX - 4 {
        return Err(FrameError::TooLong {
            len,
            max: FRAME_BYTES_MAX,
        });
    }
    if len < PREFIX_LEN - 4 {
        return Err(FrameError::HeaderLength { header_len: 0, len });
    }
    Ok(Some(len))
}

/// Builds a frame: messages, and payload bytes they point into.
#[derive(Debug)]
pub struct FrameBuilder {
    header: FrameHeader,
    payload: Vec<Bytes>,
    payload_len: usize,
}

impl FrameBuilder {
    pub fn new(from: NodeId, to: NodeId) -> FrameBuilder {
        FrameBuilder {
            header: FrameHeader {
                from,
                to,
                messages: Vec::new(),
            },
            payload: Vec::new(),
            payload_len: 0,
        }
    }

    /// Payload bytes so far.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    pub fn is_empty(&self) -> bool {
        self.header.messages.is_empty()
    }

    /// True when `more` payload bytes still fit under [`FRAME_BYTES_MAX`], leaving room
    /// for the header (senders start a new frame otherwise).
    pub fn fits(&self, more: usize) -> bool {
        self.payload_len + more <= FRAME_BYTES_MAX - HEADER_BYTES_MAX
    }

    /// Adds payload bytes; returns where they are.
    ///
    /// # Panics
    /// When they do not fit (check [`FrameBuilder::fits`] first).
    pub fn payload(&mut self, bytes: Bytes) -> Span {
        assert!(
            self.fits(bytes.len()),
            "{} payload bytes after {} overflow a node frame",
            bytes.len(),
            self.payload_len
        );
        let span = Span {
            offset: u32::try_from(self.payload_len).expect("bounded by FRAME_BYTES_MAX"),
            len: u32::try_from(bytes.len()).expect("bounded by FRAME_BYTES_MAX"),
        };
        self.payload_len += bytes.len();
        self.payload.push(bytes);
        span
    }

    pub fn push(&mut self, message: NodeMessage) {
        self.header.messages.push(message);
    }

    /// The frame as buffers to write in order (the prefix and header first, then the
    /// payload's pieces as they were given).
    ///
    /// # Panics
    /// When the header outgrows [`HEADER_BYTES_MAX`] (senders bound messages per frame).
    pub fn finish(self) -> Vec<Bytes> {
        let header =
            rkyv::to_bytes::<rkyv::rancor::Error>(&self.header).expect("a frame header serializes");
        assert!(
            header.len() <= HEADER_BYTES_MAX,
            "a node frame header of {} bytes (bound {HEADER_BYTES_MAX})",
            header.len()
        );
        let len = PREFIX_LEN - 4 + header.len() + self.payload_len;
        let mut first = Vec::with_capacity(PREFIX_LEN + header.len());
        first.extend_from_slice(&u32::try_from(len).expect("bounded").to_le_bytes());
        first.extend_from_slice(&u32::try_from(header.len()).expect("bounded").to_le_bytes());
        first.extend_from_slice(&crc32c::crc32c(&header).to_le_bytes());
        first.extend_from_slice(&header);
        let mut parts = Vec::with_capacity(1 + self.payload.len());
        parts.push(Bytes::from(first));
        parts.extend(self.payload);
        parts
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn sample() -> (FrameHeader, Vec<Bytes>) {
        let mut builder = FrameBuilder::new(NodeId::new(1), NodeId::new(2));
        let raft = builder.payload(Bytes::from_static(b"raft message"));
        builder.push(NodeMessage::Controller { span: raft });
        let first = builder.payload(Bytes::from_static(b"batch one"));
        let second = builder.payload(Bytes::from_static(b"batch two, longer"));
        builder.push(NodeMessage::Chain {
            topic_id: [9; 16],
            partition: 3,
            message: ChainWire::Append {
                epoch: 4,
                seq: 17,
                start: 100,
                entries: vec![first, second],
                committed: 90,
                cut: Some((12, 95)),
            },
        });
        builder.push(NodeMessage::Heartbeat {
            id: 5,
            reports: vec![WireReport {
                topic_id: [9; 16],
                partition: 3,
                epoch: 4,
                durable_end: 120,
                committed: 90,
                committed_in: 4,
            }],
        });
        builder.push(NodeMessage::HeartbeatAnswer {
            id: 5,
            answer: WireAnswer::NotLeader {
                leader: Some(NodeId::new(3)),
            },
        });
        let header = builder.header.clone();
        (header, builder.finish())
    }

    fn joined(parts: &[Bytes]) -> Vec<u8> {
        parts.iter().flat_map(|part| part.iter().copied()).collect()
    }

    #[test]
    fn frames_round_trip_and_arrive_in_pieces() {
        let (header, parts) = sample();
        let mut wire = joined(&parts);
        wire.extend_from_slice(&wire.clone());
        let mut buf = Bytes::new();
        let mut frames = Vec::new();
        // Fed a byte at a time, the decoder waits for whole frames and takes them one by one.
        for byte in &wire {
            let mut grown = buf.to_vec();
            grown.push(*byte);
            buf = Bytes::from(grown);
            while let Some(frame) = Frame::decode(&mut buf).expect("valid") {
                frames.push(frame);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(frames.len(), 2);
        let frame = &frames[1];
        assert_eq!(frame.header, header);
        let NodeMessage::Chain {
            message: ChainWire::Append { entries, .. },
            ..
        } = &frame.header.messages[1]
        else {
            panic!("a chain append")
        };
        assert_eq!(&frame.bytes(entries[1])[..], b"batch two, longer");
    }

    #[test]
    fn damaged_frames_are_refused_with_the_reason() {
        let (_, parts) = sample();
        let wire = joined(&parts);
        let check = |bytes: Vec<u8>, expected: fn(&FrameError) -> bool| {
            let outcome = Frame::decode(&mut Bytes::from(bytes));
            assert!(
                matches!(&outcome, Err(error) if expected(error)),
                "{outcome:?}"
            );
        };
        let mut long = wire.clone();
        long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        check(long, |e| matches!(e, FrameError::TooLong { .. }));
        let mut crc = wire.clone();
        crc[PREFIX_LEN + 3] ^= 1;
        check(crc, |e| matches!(e, FrameError::HeaderCrc { .. }));
        let mut header_len = wire.clone();
        header_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        check(header_len, |e| matches!(e, FrameError::HeaderLength { .. }));
        // A payload shorter than the spans claim.
        let mut short = wire.clone();
        short.truncate(wire.len() - 5);
        let len = u32::try_from(short.len() - 4).expect("small");
        short[..4].copy_from_slice(&len.to_le_bytes());
        check(short, |e| matches!(e, FrameError::SpanOutside { .. }));
    }

    /// Random damage to a valid frame never panics the decoder.
    #[test]
    fn mutated_frames_never_panic() {
        let (_, parts) = sample();
        let wire = joined(&parts);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..5000 {
            let mut bytes = wire.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.r#gen();
            }
            let mut buf = Bytes::from(bytes);
            while let Ok(Some(_)) = Frame::decode(&mut buf) {}
        }
    }
}
