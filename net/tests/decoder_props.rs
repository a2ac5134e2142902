//! The request decoder on arbitrary and mutated frames: it answers or refuses, never
//! panics, and never allocates by a claimed length (the vendored protocol crate checks
//! lengths against the bytes present; a panic or an abort fails this test).

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, JoinGroupRequest, MetadataRequest, ProduceRequest, RequestHeader,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use proptest::prelude::*;

fn frame<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, body: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("props")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version)).unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

fn valid_frames() -> Vec<Vec<u8>> {
    vec![
        frame(ApiKey::Produce, 9, &ProduceRequest::default().with_acks(-1)),
        frame(ApiKey::Fetch, 12, &FetchRequest::default()),
        frame(ApiKey::Metadata, 12, &MetadataRequest::default()),
        frame(ApiKey::JoinGroup, 5, &JoinGroupRequest::default()),
    ]
}

#[test]
fn valid_frames_decode() {
    for frame in valid_frames() {
        strand_net::api::decode_frame(Bytes::from(frame)).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_are_refused_or_decoded(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = strand_net::api::decode_frame(Bytes::from(bytes));
    }

    #[test]
    fn mutated_frames_are_refused_or_decoded(
        which in 0usize..4,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..10),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = valid_frames().swap_remove(which);
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = strand_net::api::decode_frame(Bytes::from(bytes));
    }
}
