//! The records of a v2 batch, parsed whole (key, value, headers), from the record bytes
//! after the batch header, decompressed if the batch was compressed.
//!
//! `record_frames` reads only each record's framing; this module reads everything, for
//! the work that needs keys and values: the log cleaner (latest value per key), and the
//! produce path's checks of compacted topics (every record has a key) and timestamps.
//!
//! Record layout (Kafka's `DefaultRecord`): length varint, attributes i8, timestamp delta
//! varlong, offset delta varint, key length varint and key (-1: null), value length varint
//! and value (-1: null, a tombstone), header count varint and headers.

use crate::varint::{get_varint, get_varlong, put_varlong};

/// One record, borrowing from the record bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub attributes: u8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone: on a compacted topic it deletes the key.
    pub value: Option<&'a [u8]>,
    /// The header count and the headers, as stored.
    pub headers: &'a [u8],
    /// The whole record as stored, its length prefix included.
    pub raw: &'a [u8],
}

/// Why record bytes do not parse.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record {index}: {reason}")]
    Malformed { index: usize, reason: &'static str },
    #[error("{count} records were expected but bytes remain after them")]
    TrailingBytes { count: usize },
}

/// Parses exactly `count` records from `bytes`, which they must fill.
pub fn parse(bytes: &[u8], count: usize) -> Result<Vec<Record<'_>>, RecordError> {
    let mut records = Vec::with_capacity(count.min(bytes.len()));
    let mut rest = bytes;
    for index in 0..count {
        let (record, tail) =
            parse_one(rest).map_err(|reason| RecordError::Malformed { index, reason })?;
        records.push(record);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(RecordError::TrailingBytes { count });
    }
    Ok(records)
}

impl Record<'_> {
    /// Appends the record to `out` with new deltas (a batch rebuilt on another base
    /// timestamp), keeping everything else as stored.
    pub fn encode_with(&self, out: &mut Vec<u8>, timestamp_delta: i64, offset_delta: i32) {
        if timestamp_delta == self.timestamp_delta && offset_delta == self.offset_delta {
            out.extend_from_slice(self.raw);
            return;
        }
        let mut body = Vec::with_capacity(self.raw.len() + 8);
        body.push(self.attributes);
        put_varlong(&mut body, timestamp_delta);
        put_varlong(&mut body, i64::from(offset_delta));
        put_bytes(&mut body, self.key);
        put_bytes(&mut body, self.value);
        body.extend_from_slice(self.headers);
        put_varlong(
            out,
            i64::try_from(body.len()).expect("records are below 2 GiB"),
        );
        out.extend_from_slice(&body);
    }
}

fn parse_one(buf: &[u8]) -> Result<(Record<'_>, &[u8]), &'static str> {
    let (len, len_bytes) = get_varint(buf).ok_or("length is not a varint")?;
    let len = usize::try_from(len).map_err(|_| "length is negative")?;
    let end = len_bytes.checked_add(len).ok_or("length overflows")?;
    let raw = buf.get(..end).ok_or("record runs past the data")?;
    let mut body = &raw[len_bytes..];
    let (&attributes, tail) = body.split_first().ok_or("record has no attributes")?;
    body = tail;
    let (timestamp_delta, used) =
        get_varlong(body, 10).ok_or("timestamp delta is not a varlong")?;
    body = &body[used..];
    let (offset_delta, used) = get_varint(body).ok_or("offset delta is not a varint")?;
    body = &body[used..];
    let (key, tail) = take_bytes(body).ok_or("key does not frame")?;
    let (value, headers) = take_bytes(tail).ok_or("value does not frame")?;
    check_headers(headers)?;
    let record = Record {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        raw,
    };
    Ok((record, &buf[end..]))
}

/// A length-prefixed byte string (-1 for null) and what follows it.
fn take_bytes(buf: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let (len, used) = get_varint(buf)?;
    let rest = &buf[used..];
    if len == -1 {
        return Some((None, rest));
    }
    let len = usize::try_from(len).ok()?;
    Some((Some(rest.get(..len)?), rest.get(len..)?))
}

fn check_headers(buf: &[u8]) -> Result<(), &'static str> {
    let (count, used) = get_varint(buf).ok_or("header count is not a varint")?;
    let count = usize::try_from(count).map_err(|_| "header count is negative")?;
    let mut rest = &buf[used..];
    for _ in 0..count {
        let (name, tail) = take_bytes(rest).ok_or("header name does not frame")?;
        name.ok_or("header name is null")?;
        let (_, tail) = take_bytes(tail).ok_or("header value does not frame")?;
        rest = tail;
    }
    if !rest.is_empty() {
        return Err("bytes follow the headers");
    }
    Ok(())
}

fn put_bytes(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(buf, -1),
        Some(bytes) => {
            put_varlong(
                buf,
                i64::try_from(bytes.len()).expect("records are below 2 GiB"),
            );
            buf.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BATCH_HEADER_LEN;
    use crate::batch_builder::BatchBuilder;

    fn built() -> Vec<u8> {
        let mut builder = BatchBuilder::new(1_000);
        builder.record_at(1_000, Some(b"k1"), Some(b"v1"), &[("h", b"x")]);
        builder.record_at(1_005, Some(b"k2"), None, &[]);
        builder.record_at(990, None, Some(b"v3"), &[("a", b""), ("b", b"yz")]);
        builder.build()
    }

    #[test]
    fn records_parse_with_keys_values_and_deltas() {
        let bytes = built();
        let records = parse(&bytes[BATCH_HEADER_LEN..], 3).unwrap();
        let summary: Vec<_> = records
            .iter()
            .map(|r| (r.key, r.value, r.timestamp_delta, r.offset_delta))
            .collect();
        assert_eq!(
            summary,
            [
                (Some(&b"k1"[..]), Some(&b"v1"[..]), 0, 0),
                (Some(&b"k2"[..]), None, 5, 1),
                (None, Some(&b"v3"[..]), -10, 2),
            ]
        );
        let raw_len: usize = records.iter().map(|r| r.raw.len()).sum();
        assert_eq!(raw_len, bytes.len() - BATCH_HEADER_LEN);
    }

    #[test]
    fn re_encoding_changes_only_the_deltas() {
        let bytes = built();
        let records = parse(&bytes[BATCH_HEADER_LEN..], 3).unwrap();
        let mut out = Vec::new();
        for record in &records {
            record.encode_with(
                &mut out,
                record.timestamp_delta - 300,
                record.offset_delta + 7,
            );
        }
        let again = parse(&out, 3).unwrap();
        for (before, after) in records.iter().zip(&again) {
            assert_eq!(after.timestamp_delta, before.timestamp_delta - 300);
            assert_eq!(after.offset_delta, before.offset_delta + 7);
            assert_eq!(
                (after.key, after.value, after.headers),
                (before.key, before.value, before.headers)
            );
        }
    }

    #[test]
    fn miscounted_or_damaged_records_are_refused() {
        let bytes = built();
        let records = &bytes[BATCH_HEADER_LEN..];
        assert_eq!(
            parse(records, 2).unwrap_err(),
            RecordError::TrailingBytes { count: 2 }
        );
        assert!(matches!(
            parse(records, 4).unwrap_err(),
            RecordError::Malformed { index: 3, .. }
        ));
        assert!(matches!(
            parse(&records[..records.len() - 1], 3).unwrap_err(),
            RecordError::Malformed { index: 2, .. }
        ));
    }
}
