//! A Strand listener in the test process, and raw Kafka frames to talk to it.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use strand_engine::{EngineConfig, Limits, ShardSet};
use strand_net::{NetConfig, NetLimits};

/// A broker in this process, stopped on drop.
pub struct Listener {
    shards: Option<ShardSet>,
    pub address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(shards) = self.shards.take() {
            let _ = shards.shutdown();
        }
    }
}

pub fn start(limits: NetLimits) -> Listener {
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
    let coordinators = strand_net::Coordinators::new(1);
    let metrics = strand_net::MetricsHub::new(1);
    let shards = ShardSet::start(engine, move |router| {
        strand_net::serve(
            router,
            Rc::new(net.clone()),
            ready_tx.clone(),
            coordinators.clone(),
            metrics.clone(),
        )
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

pub fn limits() -> NetLimits {
    NetLimits {
        frame_bytes_max: 1 << 20,
        request_bytes_in_flight_max: 4 << 20,
        connections_max: 64,
        idle_timeout: Duration::from_millis(500),
        frame_timeout: Duration::from_millis(500),
        ..NetLimits::default()
    }
}

pub fn connect(listener: &Listener) -> TcpStream {
    let stream = TcpStream::connect(listener.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// A request frame: length, header, body.
pub fn frame<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, body: &R) -> Vec<u8> {
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
pub fn read_response(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0; usize::try_from(u32::from_be_bytes(len)).unwrap()];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

/// True once the broker has closed `stream` (reads end without a response).
pub fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

/// ApiVersions and Metadata on a fresh connection both answer.
pub fn well_behaved_client_is_served(listener: &Listener) {
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
