//! Node-to-node traffic: the frames that carry controller messages, heartbeats and chain
//! messages between nodes. The connections that carry them are not built yet.

mod frame;

pub use frame::{
    ChainWire, FRAME_BYTES_MAX, Frame, FrameBuilder, FrameError, FrameHeader, HEADER_BYTES_MAX,
    NodeMessage, Span, WireAnswer, WireReport, frame_len,
};
