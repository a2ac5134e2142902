//! Hostile and broken clients against a real listener: each gets Kafka's answer or a closed
//! connection, without large allocations, while a well-behaved client keeps being served.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use proptest::prelude::*;
use strand_engine::{EngineConfig, Limits, ShardSet};
use strand_net::{NetConfig, NetLimits};

/// A broker in this process, stopped on drop.
struct Listener {
    shards: Option<ShardSet>,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(shards) = self.shards.take() {
            let _ = shards.shutdown();
        }
    }
}

fn start(limits: NetLimits) -> Listener {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = EngineConfig::new(dir.path());
    engine.shard_count = 1;
    engine.pin_cpus = false;
    engine.limits = Limits {
        io_memory_bytes: 1 << 20,
        spin_before_park_us: 0,
        ..Limits::default()
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut net = NetConfig::new(address);
    net.limits = limits;
    let (ready_tx, ready) = flume::bounded(1);
    let shards = ShardSet::start(engine, move |router| {
        strand_net::serve(router, Rc::new(net.clone()), ready_tx.clone())
    })
    .unwrap();
    ready
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    Listener {
        shards: Some(shards),
        address,
        _dir: dir,
    }
}

fn limits() -> NetLimits {
    NetLimits {
        frame_bytes_max: 1 << 20,
        request_bytes_in_flight_max: 4 << 20,
        connections_max: 64,
        idle_timeout: Duration::from_millis(500),
        frame_timeout: Duration::from_millis(500),
        ..NetLimits::default()
    }
}

fn connect(listener: &Listener) -> TcpStream {
    let stream = TcpStream::connect(listener.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A request frame: length, header, body.
fn frame<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, body: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version)).unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut framed = u32::try_from(buf.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(&buf);
    framed
}

/// Reads one response frame; `None` when the broker closed the connection.
fn read_response(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0; usize::try_from(u32::from_be_bytes(len)).unwrap()];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

/// True once the broker has closed `stream` (reads end without a response).
fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

/// ApiVersions and Metadata on a fresh connection both answer.
fn well_behaved_client_is_served(listener: &Listener) {
    let mut stream = connect(listener);
    stream
        .write_all(&frame(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default(),
        ))
        .unwrap();
    let mut response = bytes::Bytes::from(read_response(&mut stream).unwrap());
    assert_eq!(response.get_i32(), 7, "correlation id");
    let versions = ApiVersionsResponse::decode(&mut response, 3).unwrap();
    assert_eq!(versions.error_code, 0);
    assert!(
        versions
            .api_keys
            .iter()
            .any(|api| api.api_key == ApiKey::Produce as i16)
    );
    stream
        .write_all(&frame(ApiKey::Metadata, 9, &MetadataRequest::default()))
        .unwrap();
    assert!(read_response(&mut stream).is_some());
}

#[test]
fn broken_requests_close_their_connection_and_nothing_else() {
    let listener = start(limits());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage body", {
            let mut bytes = vec![0, 0, 0, 12];
            bytes.extend_from_slice(&[0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x7f]);
            bytes
        }),
        ("shorter than a header", vec![0, 0, 0, 2, 0, 18]),
        ("unknown api key", {
            let mut bytes = frame(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
            bytes[4..6].copy_from_slice(&999i16.to_be_bytes());
            bytes
        }),
        (
            "unsupported version",
            frame(ApiKey::Metadata, 9, &MetadataRequest::default()),
        )
            .map_version(99),
        ("2 GiB length", vec![0x7f, 0xff, 0xff, 0xff, 0, 18, 0, 3]),
        ("negative length", vec![0xff, 0xff, 0xff, 0xf0]),
        ("array of 2^31 topics", {
            // Metadata v1: topics array claims i32::MAX entries in a 16-byte frame.
            let mut bytes = frame(ApiKey::Metadata, 1, &MetadataRequest::default());
            let len = bytes.len();
            bytes[len - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
            bytes
        }),
    ];
    for (name, bytes) in cases {
        let mut stream = connect(&listener);
        stream.write_all(&bytes).unwrap();
        assert!(closed(&mut stream), "{name}: the connection stayed open");
        well_behaved_client_is_served(&listener);
    }
}

trait MapVersion {
    fn map_version(self, version: i16) -> Self;
}

impl MapVersion for (&'static str, Vec<u8>) {
    fn map_version(mut self, version: i16) -> Self {
        self.1[6..8].copy_from_slice(&version.to_be_bytes());
        self
    }
}

#[test]
fn an_unknown_api_versions_version_gets_unsupported_version_in_version_0() {
    let listener = start(limits());
    let mut stream = connect(&listener);
    let mut request = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    request[6..8].copy_from_slice(&77i16.to_be_bytes());
    stream.write_all(&request).unwrap();
    let mut response = bytes::Bytes::from(read_response(&mut stream).unwrap());
    assert_eq!(response.get_i32(), 7);
    let versions = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(versions.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(!versions.api_keys.is_empty());
}

#[test]
fn cut_off_and_silent_clients_are_closed_after_their_timeouts() {
    let listener = start(limits());
    let mut silent = connect(&listener);
    let mut cut = connect(&listener);
    let request = frame(ApiKey::Metadata, 9, &MetadataRequest::default());
    cut.write_all(&request[..request.len() - 3]).unwrap();
    let started = Instant::now();
    assert!(closed(&mut silent), "a silent client stayed connected");
    assert!(closed(&mut cut), "a cut-off request kept its connection");
    assert!(started.elapsed() < Duration::from_secs(5));
    well_behaved_client_is_served(&listener);
}

#[test]
fn a_flood_of_connections_past_the_bound_is_refused() {
    let listener = start(NetLimits {
        connections_max: 8,
        idle_timeout: Duration::from_secs(30),
        ..limits()
    });
    let held: Vec<TcpStream> = (0..8).map(|_| connect(&listener)).collect();
    // Let the broker count them before the flood.
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..50 {
        let mut extra = connect(&listener);
        assert!(closed(&mut extra), "a connection past the bound was kept");
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    well_behaved_client_is_served(&listener);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Mutated frames of real requests never take the broker down: each is answered or its
    /// connection closed, and a good client is still served.
    #[test]
    fn mutated_frames_are_answered_or_refused(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        thread_local! {
            static LISTENER: Listener = start(limits());
        }
        let mut bytes = match which {
            0 => frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
            1 => frame(ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(Some(vec![]))),
            _ => frame(ApiKey::Metadata, 12, &MetadataRequest::default()),
        };
        for (at, value) in flips {
            // Leave the length alone: a wrong length is a timeout case, tested above.
            let at = 4 + at.index(bytes.len() - 4);
            bytes[at] ^= value;
        }
        LISTENER.with(|listener| {
            let mut stream = connect(listener);
            stream.write_all(&bytes).unwrap();
            let _ = read_response(&mut stream);
            well_behaved_client_is_served(listener);
        });
    }
}
