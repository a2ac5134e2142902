//! Node-to-node traffic: the frames that carry controller messages, heartbeats and chain
//! messages between nodes, and the links (TCP connections) that carry the controller's.

mod frame;
mod links;

pub use frame::{
    ChainWire, FRAME_BYTES_MAX, Frame, FrameBuilder, FrameError, FrameHeader, HEADER_BYTES_MAX,
    NodeMessage, Span, WireAnswer, WireReport, frame_len,
};
pub use links::{
    BULK_QUEUED_BYTES_MAX, INBOUND_PER_PEER_MAX, Inbound, Links, QUEUE_CONTROL_RESERVE,
    QUEUE_FRAMES_MAX, SendError, WRITE_TIMEOUT,
};
