//! Hostile and broken clients against a real listener: each gets Kafka's answer or a closed
//! connection, without large allocations, while a well-behaved client keeps being served.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Buf;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};
use kafka_protocol::protocol::Decodable;
use proptest::prelude::*;
use strand_net::NetLimits;
use support::{
    Listener, closed, connect, frame, limits, read_response, start, well_behaved_client_is_served,
};

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
