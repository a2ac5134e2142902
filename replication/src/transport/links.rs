//! Long-lived TCP links between nodes for the controller's traffic: one outgoing
//! connection to every peer, kept up by its own thread, and the peers' connections to
//! this node, each read by its own thread.
//!
//! The controller's traffic (Raft messages, registrations, heartbeats: a few small frames a
//! tick) and chain replication's share the links; they run on plain threads with blocking
//! sockets beside the shards, leaving io_uring rings (and the memlock they pin) to the
//! shards' disk work. Chain frames go as bulk ([`Links::send_bulk`]): bounded in bytes
//! per peer, and never taking the queue places kept for the controller.
//!
//! Every bound is explicit: a peer's outgoing queue holds [`QUEUE_FRAMES_MAX`] frames and
//! refuses more (the sender counts the frame lost; Raft and heartbeats resend); a write
//! that makes no progress for [`WRITE_TIMEOUT`] (a paused peer) drops the connection; a
//! node keeps at most [`INBOUND_PER_PEER_MAX`] connections per peer, the newest (a peer
//! that crashed without closing its old ones must not be locked out); a connection that
//! names no peer within [`IDENTIFY_TIMEOUT`] is closed, and at most 16 may be waiting to; a frame claiming more than
//! [`FRAME_BYTES_MAX`](super::FRAME_BYTES_MAX) closes its connection, and memory for a
//! frame is reserved ahead of its bytes only for an identified peer. Frames from a node
//! that is not a peer, or addressed to another node, close their connection too.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frame::{Frame, frame_len};
use crate::ids::NodeId;

/// Frames waiting to go to one peer.
pub const QUEUE_FRAMES_MAX: usize = 256;

/// Of those, the places bulk frames leave free for the controller's.
pub const QUEUE_CONTROL_RESERVE: usize = 64;

/// Bytes of bulk frames (chain replication) queued for one peer, at most.
pub const BULK_QUEUED_BYTES_MAX: usize = 64 << 20;

/// How long a write may make no progress before the connection is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Connections a node accepts from one peer at once (a restarted peer's new connection
/// may arrive before the old one is noticed closed).
pub const INBOUND_PER_PEER_MAX: usize = 4;

/// Accepted connections that have not named their peer yet, at most.
const UNIDENTIFIED_MAX: usize = 16;

/// How long an accepted connection may take to send its first frame.
pub const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
const READ_CHUNK: usize = 64 << 10;

/// What the links hand to their owner.
#[derive(Debug)]
pub enum Inbound {
    /// A frame from a peer, addressed to this node.
    Frame(Frame),
    /// The connection to a peer went down (or could not be made): what was queued for it
    /// may be lost.
    Down(NodeId),
}

/// The links of one node.
#[derive(Debug)]
pub struct Links {
    me: NodeId,
    outgoing: BTreeMap<NodeId, Outgoing>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Outgoing {
    queue: SyncSender<Vec<Bytes>>,
    connected: Arc<AtomicBool>,
    /// Bytes and frames queued for the peer.
    queued_bytes: Arc<AtomicUsize>,
    queued_frames: Arc<AtomicUsize>,
    /// The last attempt to connect was refused: nothing listens at the peer's address.
    refused: Arc<AtomicBool>,
}

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("{0} is not a peer")]
    UnknownPeer(NodeId),
    #[error("the queue to {0} is full ({QUEUE_FRAMES_MAX} frames)")]
    QueueFull(NodeId),
}

impl Links {
    /// Starts accepting on `listener` and connecting to every peer in `peers` (this node
    /// excluded); what arrives goes to `inbox`.
    pub fn start(
        me: NodeId,
        listener: TcpListener,
        peers: &BTreeMap<NodeId, String>,
        inbox: SyncSender<Inbound>,
    ) -> std::io::Result<Links> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut outgoing = BTreeMap::new();
        for (&peer, address) in peers.iter().filter(|(peer, _)| **peer != me) {
            let (queue, frames) = std::sync::mpsc::sync_channel(QUEUE_FRAMES_MAX);
            let connected = Arc::new(AtomicBool::new(false));
            let queued_bytes = Arc::new(AtomicUsize::new(0));
            let queued_frames = Arc::new(AtomicUsize::new(0));
            let refused = Arc::new(AtomicBool::new(false));
            let writer = Writer {
                peer,
                address: address.clone(),
                frames,
                connected: connected.clone(),
                queued_bytes: queued_bytes.clone(),
                queued_frames: queued_frames.clone(),
                refused: refused.clone(),
                inbox: inbox.clone(),
                stop: stop.clone(),
            };
            match spawn(&format!("strand-link-{peer}"), move || writer.run()) {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(error);
                }
            }
            outgoing.insert(
                peer,
                Outgoing {
                    queue,
                    connected,
                    queued_bytes,
                    queued_frames,
                    refused,
                },
            );
        }
        let acceptor = Acceptor {
            me,
            listener,
            peers: outgoing.keys().copied().collect(),
            inbox,
            stop: stop.clone(),
            inbound: Arc::new(Mutex::new(BTreeMap::new())),
        };
        match spawn("strand-link-accept", move || acceptor.run()) {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                stop.store(true, Ordering::Relaxed);
                return Err(error);
            }
        }
        Ok(Links {
            me,
            outgoing,
            stop,
            threads,
        })
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Queues a frame (as [`FrameBuilder::finish`](super::FrameBuilder::finish) made it)
    /// for `peer`.
    pub fn send(&self, peer: NodeId, frame: Vec<Bytes>) -> Result<(), SendError> {
        self.queue(peer, frame, usize::MAX)
    }

    /// Queues a frame of bulk traffic (chain replication) for `peer`, unless
    /// [`BULK_QUEUED_BYTES_MAX`] bytes are already queued for it: bulk data never crowds
    /// the controller's frames out of the queue's last [`QUEUE_CONTROL_RESERVE`] places.
    pub fn send_bulk(&self, peer: NodeId, frame: Vec<Bytes>) -> Result<(), SendError> {
        self.queue(peer, frame, BULK_QUEUED_BYTES_MAX)
    }

    fn queue(&self, peer: NodeId, frame: Vec<Bytes>, bytes_max: usize) -> Result<(), SendError> {
        let outgoing = self
            .outgoing
            .get(&peer)
            .ok_or(SendError::UnknownPeer(peer))?;
        let len = frame_bytes(&frame);
        let queued = outgoing.queued_bytes.fetch_add(len, Ordering::Relaxed);
        let bulk = bytes_max != usize::MAX;
        let frames = outgoing.queued_frames.fetch_add(1, Ordering::Relaxed);
        let refused = (bulk
            && (queued + len > bytes_max || frames + QUEUE_CONTROL_RESERVE >= QUEUE_FRAMES_MAX))
            || outgoing.queue.try_send(frame).is_err();
        if refused {
            outgoing.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            outgoing.queued_frames.fetch_sub(1, Ordering::Relaxed);
            return Err(SendError::QueueFull(peer));
        }
        Ok(())
    }

    /// True while the outgoing connection to `peer` is up.
    pub fn connected(&self, peer: NodeId) -> bool {
        self.outgoing
            .get(&peer)
            .is_some_and(|outgoing| outgoing.connected.load(Ordering::Relaxed))
    }

    /// True while connecting to `peer` is refused: no process listens at its address (it
    /// died, or has not started), unlike a paused or unreachable peer, whose connection
    /// attempts time out.
    pub fn refused(&self, peer: NodeId) -> bool {
        self.outgoing
            .get(&peer)
            .is_some_and(|outgoing| outgoing.refused.load(Ordering::Relaxed))
    }

    /// The peers, in order.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.outgoing.keys().copied()
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Writers wake on their queue closing; readers and the acceptor on their poll.
        self.outgoing.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
}

/// Keeps the connection to one peer up and writes its queued frames.
struct Writer {
    peer: NodeId,
    address: String,
    frames: Receiver<Vec<Bytes>>,
    connected: Arc<AtomicBool>,
    queued_bytes: Arc<AtomicUsize>,
    queued_frames: Arc<AtomicUsize>,
    refused: Arc<AtomicBool>,
    inbox: SyncSender<Inbound>,
    stop: Arc<AtomicBool>,
}

impl Writer {
    fn dequeued(&self, frame: &[Bytes]) {
        self.queued_bytes
            .fetch_sub(frame_bytes(frame), Ordering::Relaxed);
        self.queued_frames.fetch_sub(1, Ordering::Relaxed);
    }

    fn run(self) {
        let mut backoff = POLL;
        let mut stream: Option<TcpStream> = None;
        let mut reported_down = false;
        while !self.stop.load(Ordering::Relaxed) {
            if stream.is_none() {
                match self.connect() {
                    Ok(connection) => {
                        tracing::info!(peer = %self.peer, address = %self.address, "link up");
                        stream = Some(connection);
                        self.connected.store(true, Ordering::Relaxed);
                        self.refused.store(false, Ordering::Relaxed);
                        backoff = POLL;
                        reported_down = false;
                    }
                    Err(error) => {
                        let refused = error.kind() == ErrorKind::ConnectionRefused;
                        self.refused.store(refused, Ordering::Relaxed);
                        if !reported_down {
                            tracing::info!(peer = %self.peer, address = %self.address, %error, "link down");
                            reported_down = true;
                            let _ = self.inbox.try_send(Inbound::Down(self.peer));
                        }
                        // Frames queued meanwhile would only be stale when the link
                        // returns; Raft and heartbeats send fresh ones.
                        loop {
                            match self.frames.try_recv() {
                                Ok(frame) => self.dequeued(&frame),
                                Err(TryRecvError::Empty) => break,
                                Err(TryRecvError::Disconnected) => return,
                            }
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                        continue;
                    }
                }
            }
            let frame = match self.frames.recv_timeout(POLL) {
                Ok(frame) => {
                    self.dequeued(&frame);
                    frame
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let connection = stream.as_mut().expect("connected above");
            if let Err(error) = write_frame(connection, &frame) {
                tracing::info!(peer = %self.peer, %error, "link down");
                let _ = connection.shutdown(Shutdown::Both);
                stream = None;
                self.connected.store(false, Ordering::Relaxed);
                reported_down = true;
                let _ = self.inbox.try_send(Inbound::Down(self.peer));
            }
        }
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let addresses: Vec<SocketAddr> = self.address.to_socket_addrs()?.collect();
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the address resolves to nothing");
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    return Ok(stream);
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }
}

fn frame_bytes(frame: &[Bytes]) -> usize {
    frame.iter().map(Bytes::len).sum()
}

/// Writes every part of a frame, in order.
fn write_frame(stream: &mut TcpStream, parts: &[Bytes]) -> std::io::Result<()> {
    let mut part = 0;
    let mut offset = 0;
    while part < parts.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&parts[part][offset..])
            .chain(parts[part + 1..].iter().map(|bytes| &bytes[..]))
            .map(IoSlice::new)
            .collect();
        let mut written = stream.write_vectored(&slices)?;
        if written == 0 {
            return Err(ErrorKind::WriteZero.into());
        }
        while part < parts.len() && written >= parts[part].len() - offset {
            written -= parts[part].len() - offset;
            part += 1;
            offset = 0;
        }
        offset += written;
    }
    Ok(())
}

/// Accepts peers' connections and starts a reader for each.
struct Acceptor {
    me: NodeId,
    listener: TcpListener,
    peers: Vec<NodeId>,
    inbox: SyncSender<Inbound>,
    stop: Arc<AtomicBool>,
    /// Open inbound connections per identified peer, oldest first.
    inbound: Arc<Mutex<InboundConnections>>,
}

/// Each identified peer's open inbound connections: an id and a handle to close it.
type InboundConnections = BTreeMap<NodeId, VecDeque<(u64, TcpStream)>>;

impl Acceptor {
    fn run(self) {
        let open = Arc::new(AtomicUsize::new(0));
        let ids = AtomicU64::new(0);
        let mut readers: Vec<JoinHandle<()>> = Vec::new();
        // Identified connections are bounded per peer (the oldest is closed); the rest
        // are connections yet to name their peer, each for at most IDENTIFY_TIMEOUT.
        let limit = INBOUND_PER_PEER_MAX * self.peers.len().max(1) + UNIDENTIFIED_MAX;
        while !self.stop.load(Ordering::Relaxed) {
            readers.retain(|reader| !reader.is_finished());
            let (stream, address) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(POLL / 5);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a node connection");
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            if open.load(Ordering::Relaxed) >= limit {
                tracing::warn!(%address, limit, "refusing a node connection: too many open");
                continue;
            }
            let reader = Reader {
                me: self.me,
                peers: self.peers.clone(),
                inbox: self.inbox.clone(),
                stop: self.stop.clone(),
                inbound: self.inbound.clone(),
                open: open.clone(),
                address,
                id: ids.fetch_add(1, Ordering::Relaxed),
                accepted: Instant::now(),
            };
            open.fetch_add(1, Ordering::Relaxed);
            match spawn("strand-link-read", move || reader.run(stream)) {
                Ok(thread) => readers.push(thread),
                Err(error) => {
                    open.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(%error, "starting a node connection's reader");
                }
            }
        }
        for reader in readers {
            let _ = reader.join();
        }
    }
}

/// Reads frames from one peer's connection.
struct Reader {
    me: NodeId,
    peers: Vec<NodeId>,
    inbox: SyncSender<Inbound>,
    stop: Arc<AtomicBool>,
    inbound: Arc<Mutex<InboundConnections>>,
    open: Arc<AtomicUsize>,
    address: SocketAddr,
    id: u64,
    accepted: Instant,
}

impl Reader {
    fn run(self, stream: TcpStream) {
        let mut peer = None;
        if let Err(reason) = self.read(&stream, &mut peer) {
            tracing::info!(address = %self.address, %reason, "node connection closed");
        }
        let _ = stream.shutdown(Shutdown::Both);
        if let Some(peer) = peer {
            let mut inbound = self.inbound.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(open) = inbound.get_mut(&peer) {
                open.retain(|(id, _)| *id != self.id);
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn read(&self, mut stream: &TcpStream, peer: &mut Option<NodeId>) -> Result<(), String> {
        stream
            .set_read_timeout(Some(POLL))
            .map_err(|error| error.to_string())?;
        let mut buffer = BytesMut::with_capacity(READ_CHUNK);
        let mut chunk = vec![0; READ_CHUNK];
        loop {
            // Every whole frame buffered, in order; a frame's length is checked before
            // its bytes are waited for, which bounds the buffer.
            while let Some(len) = frame_len(&buffer).map_err(|error| error.to_string())? {
                if buffer.len() < 4 + len {
                    if peer.is_some() {
                        buffer.reserve(4 + len - buffer.len());
                    }
                    break;
                }
                let mut bytes = buffer.split_to(4 + len).freeze();
                let frame = Frame::decode(&mut bytes)
                    .map_err(|error| error.to_string())?
                    .ok_or("a whole frame did not decode")?;
                self.identify(&frame, stream, peer)?;
                if !self.deliver(Inbound::Frame(frame)) {
                    return Ok(()); // the owner stopped
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if peer.is_none() && self.accepted.elapsed() > IDENTIFY_TIMEOUT {
                return Err(format!("sent no frame within {IDENTIFY_TIMEOUT:?}"));
            }
            match stream.read(&mut chunk) {
                Ok(0) => return Err("closed by the peer".to_owned()),
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue;
                }
                Err(error) => return Err(error.to_string()),
            }
        }
    }

    /// Hands `item` to the owner, waiting while its inbox is full; false once the owner
    /// or the links stopped.
    fn deliver(&self, mut item: Inbound) -> bool {
        loop {
            match self.inbox.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    item = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Checks the frame's sender and receiver; the first frame names the connection's
    /// peer, and closes that peer's oldest connection if it has too many.
    fn identify(
        &self,
        frame: &Frame,
        stream: &TcpStream,
        peer: &mut Option<NodeId>,
    ) -> Result<(), String> {
        let from = frame.header.from;
        if frame.header.to != self.me {
            return Err(format!(
                "a frame for {} arrived at {}",
                frame.header.to, self.me
            ));
        }
        match *peer {
            Some(known) if known != from => {
                Err(format!("{known}'s connection sent a frame from {from}"))
            }
            Some(_) => Ok(()),
            None if !self.peers.contains(&from) => Err(format!("{from} is not a peer")),
            None => {
                let handle = stream.try_clone().map_err(|error| error.to_string())?;
                let mut inbound = self.inbound.lock().unwrap_or_else(|e| e.into_inner());
                let open = inbound.entry(from).or_default();
                while open.len() >= INBOUND_PER_PEER_MAX {
                    if let Some((_, oldest)) = open.pop_front() {
                        tracing::info!(peer = %from, "closing the peer's oldest connection");
                        let _ = oldest.shutdown(Shutdown::Both);
                    }
                }
                open.push_back((self.id, handle));
                *peer = Some(from);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::Receiver;

    use super::*;
    use crate::transport::{FrameBuilder, NodeMessage, WireAnswer};

    fn node(id: u32) -> NodeId {
        NodeId::new(id)
    }

    fn answer(from: u32, to: u32, id: u64) -> Vec<Bytes> {
        let mut builder = FrameBuilder::new(node(from), node(to));
        let span = builder.payload(Bytes::from(vec![5; 100_000]));
        builder.push(NodeMessage::Controller { span });
        builder.push(NodeMessage::HeartbeatAnswer {
            id,
            answer: WireAnswer::Unregistered,
        });
        builder.finish()
    }

    fn next_frame(inbox: &Receiver<Inbound>) -> Frame {
        loop {
            match inbox.recv_timeout(Duration::from_secs(10)).unwrap() {
                Inbound::Frame(frame) => return frame,
                Inbound::Down(_) => {}
            }
        }
    }

    /// Two nodes' links carry frames both ways; a connection that sends a frame from a
    /// node that is not a peer, or for another node, is closed.
    #[test]
    fn frames_cross_between_peers_and_strangers_are_cut_off() {
        let listeners = [
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        ];
        let addresses: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        let peers: BTreeMap<NodeId, String> = addresses
            .iter()
            .enumerate()
            .map(|(id, address)| (node(u32::try_from(id).unwrap()), address.clone()))
            .collect();
        let [zero, one] = listeners;
        let (to_zero, inbox_zero) = std::sync::mpsc::sync_channel(16);
        let (to_one, inbox_one) = std::sync::mpsc::sync_channel(16);
        let links_zero = Links::start(node(0), zero, &peers, to_zero).unwrap();
        let links_one = Links::start(node(1), one, &peers, to_one).unwrap();

        links_zero.send(node(1), answer(0, 1, 7)).unwrap();
        let frame = next_frame(&inbox_one);
        assert_eq!(frame.header.from, node(0));
        assert!(matches!(
            frame.header.messages[1],
            NodeMessage::HeartbeatAnswer { id: 7, .. }
        ));
        let NodeMessage::Controller { span } = frame.header.messages[0] else {
            panic!("a controller message first");
        };
        assert_eq!(frame.bytes(span), Bytes::from(vec![5; 100_000]));
        links_one.send(node(0), answer(1, 0, 8)).unwrap();
        assert_eq!(next_frame(&inbox_zero).header.from, node(1));
        assert_eq!(
            links_one.send(node(5), answer(1, 5, 1)),
            Err(SendError::UnknownPeer(node(5)))
        );

        for (from, to) in [(9, 1), (0, 3)] {
            let mut stranger = TcpStream::connect(&addresses[1]).unwrap();
            stranger
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            write_frame(&mut stranger, &answer(from, to, 1)).unwrap();
            let mut byte = [0; 1];
            let read = stranger.read(&mut byte);
            assert!(
                matches!(read, Ok(0))
                    || read
                        .as_ref()
                        .is_err_and(|error| error.kind() == ErrorKind::ConnectionReset),
                "the connection from {from} to {to} is closed: {read:?}"
            );
        }
        assert!(links_zero.connected(node(1)));

        // A peer that opens more connections than allowed (its old ones dead but not
        // closed, say) keeps its newest: the oldest is closed, not the new one refused.
        let mut streams: Vec<TcpStream> = (0..=INBOUND_PER_PEER_MAX)
            .map(|at| {
                let mut stream = TcpStream::connect(&addresses[1]).unwrap();
                write_frame(&mut stream, &answer(0, 1, 100 + u64::try_from(at).unwrap())).unwrap();
                // Each is identified before the next connects.
                assert_eq!(next_frame(&inbox_one).header.from, node(0));
                stream
            })
            .collect();
        let oldest = &mut streams[0];
        oldest
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0; 1];
        assert!(
            matches!(oldest.read(&mut byte), Ok(0)),
            "the oldest is closed"
        );
        let newest = streams.last_mut().unwrap();
        write_frame(newest, &answer(0, 1, 999)).unwrap();
        assert!(matches!(
            next_frame(&inbox_one).header.messages[1],
            NodeMessage::HeartbeatAnswer { id: 999, .. }
        ));
    }
}
