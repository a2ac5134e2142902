//! Produce v0–2 and Fetch v2–3, which the protocol crate cannot decode but which librdkafka
//! up to 2.0 (Debian's kcat) must see advertised: it compresses with gzip, snappy or lz4
//! only when Produce v0 is in the broker's range, and enables "MsgVer1" only with Produce
//! v2 and Fetch v2. Clients that really send them are old ones writing message format 0 or
//! 1, which Strand does not store (Kafka 4 dropped it too):
//!
//! - Produce v0–2 requests are v3 without the transactional id, so they are decoded as v3
//!   and handled normally; a batch of format 0 or 1 is refused with
//!   UNSUPPORTED_FOR_MESSAGE_FORMAT by batch validation. The v2 answer is laid out as v3's;
//!   v0 and v1 lack the log append time (and v0 the throttle time), see
//!   [`produce_response_v0_v1`].
//! - Fetch v2–3 would need the records down-converted to format 1; every partition is
//!   answered UNSUPPORTED_FOR_MESSAGE_FORMAT.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;

/// Produce v2's body as a v3 body: a null transactional id in front.
pub fn produce_v2_as_v3(body: &[u8]) -> Bytes {
    let mut v3 = BytesMut::with_capacity(body.len() + 2);
    v3.put_i16(-1);
    v3.extend_from_slice(body);
    v3.freeze()
}

/// A Produce answer laid out as version 0 or 1 (body only).
pub fn produce_response_v0_v1(
    response: &kafka_protocol::messages::ProduceResponse,
    version: i16,
) -> anyhow::Result<Bytes> {
    let mut out = BytesMut::new();
    out.put_i32(i32::try_from(response.responses.len())?);
    for topic in &response.responses {
        let name = topic.name.0.as_bytes();
        out.put_i16(i16::try_from(name.len())?);
        out.extend_from_slice(name);
        out.put_i32(i32::try_from(topic.partition_responses.len())?);
        for partition in &topic.partition_responses {
            out.put_i32(partition.index);
            out.put_i16(partition.error_code);
            out.put_i64(partition.base_offset);
        }
    }
    if version >= 1 {
        out.put_i32(response.throttle_time_ms);
    }
    Ok(out.freeze())
}

/// The smallest encoding of one partition in a Fetch v2–3 request.
const PARTITION_BYTES: usize = 16;

/// The answer to a Fetch v2–3 request body: every partition refused. The response
/// header (correlation id) is the caller's.
pub fn fetch_v2_v3(mut body: Bytes, version: i16) -> anyhow::Result<Bytes> {
    let fixed = if version >= 3 { 16 } else { 12 };
    anyhow::ensure!(body.remaining() >= fixed + 4, "fetch request cut short");
    body.advance(fixed);
    let topics = count(&mut body, 2)?;
    let mut response = BytesMut::new();
    response.put_i32(0); // throttle time
    response.put_i32(i32::try_from(topics)?);
    for _ in 0..topics {
        let name_len =
            usize::try_from(body.get_i16()).map_err(|_| anyhow::anyhow!("null topic name"))?;
        anyhow::ensure!(body.remaining() >= name_len + 4, "fetch request cut short");
        let name = body.split_to(name_len);
        let partitions = count(&mut body, PARTITION_BYTES)?;
        response.put_i16(i16::try_from(name_len)?);
        response.extend_from_slice(&name);
        response.put_i32(i32::try_from(partitions)?);
        for _ in 0..partitions {
            let partition = body.get_i32();
            body.advance(PARTITION_BYTES - 4);
            response.put_i32(partition);
            response.put_i16(ResponseError::UnsupportedForMessageFormat.code());
            response.put_i64(-1); // high watermark
            response.put_i32(0); // no records
        }
        if body.remaining() < 2 {
            anyhow::ensure!(
                topics == 0 || body.remaining() == 0,
                "fetch request cut short"
            );
        }
    }
    Ok(response.freeze())
}

/// An array length, checked against the bytes left (each element at least `element` bytes).
fn count(body: &mut Bytes, element: usize) -> anyhow::Result<usize> {
    anyhow::ensure!(body.remaining() >= 4, "fetch request cut short");
    let count =
        usize::try_from(body.get_i32()).map_err(|_| anyhow::anyhow!("negative array length"))?;
    anyhow::ensure!(
        count.saturating_mul(element) <= body.remaining(),
        "array of {count} claims more than the {} bytes left",
        body.remaining()
    );
    Ok(count)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_fetch_v3_gets_every_partition_refused() {
        let mut request = BytesMut::new();
        request.put_i32(-1); // replica
        request.put_i32(500); // max wait
        request.put_i32(1); // min bytes
        request.put_i32(1 << 20); // max bytes (v3)
        request.put_i32(1); // one topic
        request.put_i16(3);
        request.extend_from_slice(b"abc");
        request.put_i32(2);
        for partition in [0, 5] {
            request.put_i32(partition);
            request.put_i64(10);
            request.put_i32(1 << 20);
        }
        let mut response = fetch_v2_v3(request.freeze(), 3).unwrap();
        assert_eq!(response.get_i32(), 0);
        assert_eq!(response.get_i32(), 1);
        assert_eq!(response.get_i16(), 3);
        response.advance(3);
        assert_eq!(response.get_i32(), 2);
        assert_eq!(response.get_i32(), 0);
        assert_eq!(response.get_i16(), 43);
    }

    #[test]
    fn claimed_lengths_past_the_body_are_refused() {
        let mut request = BytesMut::new();
        request.put_slice(&[0; 12]);
        request.put_i32(i32::MAX);
        assert!(fetch_v2_v3(request.freeze(), 2).is_err());
    }
}
