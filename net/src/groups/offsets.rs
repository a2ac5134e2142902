//! Committed offsets as records of the internal `__consumer_offsets` topic: the key names
//! group, topic and partition, the value the offset (a null value deletes it). The records
//! are Strand's own compact encoding, not Kafka's.

use std::collections::BTreeMap;

use bytes::Bytes;
use strand_engine::batch_builder::BatchBuilder;

/// Kafka's name for the internal topic of committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes`.
pub const METADATA_BYTES_MAX: usize = 4096;
const KEY_VERSION: u8 = 1;
const VALUE_VERSION: u8 = 1;

/// One committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// A group's committed offsets by topic and partition.
pub type GroupOffsets = BTreeMap<(String, i32), Committed>;

/// The partition of `__consumer_offsets` holding `group`, as Kafka chooses it: the Java
/// hash of the id, made non-negative, modulo the partition count.
pub fn partition_for(group: &str, partitions: u32) -> u32 {
    let hash = group.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let positive = if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    };
    positive % partitions.max(1)
}

fn put_str(buf: &mut Vec<u8>, text: &str) {
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&text.as_bytes()[..usize::from(len)]);
}

pub fn key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut key = vec![KEY_VERSION];
    put_str(&mut key, group);
    put_str(&mut key, topic);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

pub fn value(committed: &Committed, timestamp_ms: i64) -> Vec<u8> {
    let mut value = vec![VALUE_VERSION];
    value.extend_from_slice(&committed.offset.to_be_bytes());
    value.extend_from_slice(&committed.leader_epoch.to_be_bytes());
    match &committed.metadata {
        Some(metadata) => {
            value.push(1);
            put_str(&mut value, metadata);
        }
        None => value.push(0),
    }
    value.extend_from_slice(&timestamp_ms.to_be_bytes());
    value
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..len)?, self.0.get(len..)?);
        self.0 = rest;
        Some(head)
    }
    fn string(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        String::from_utf8(self.take(usize::from(len))?.to_vec()).ok()
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// A decoded record: group, topic, partition and the offset (`None` deletes it).
pub type OffsetRecord = (String, String, i32, Option<Committed>);

/// The record's meaning, or `None` when it is not one of ours.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Option<OffsetRecord> {
    let mut reader = Reader(key);
    if reader.take(1)? != [KEY_VERSION] {
        return None;
    }
    let (group, topic, partition) = (reader.string()?, reader.string()?, reader.i32()?);
    let Some(value) = value else {
        return Some((group, topic, partition, None));
    };
    let mut reader = Reader(value);
    if reader.take(1)? != [VALUE_VERSION] {
        return None;
    }
    let offset = reader.i64()?;
    let leader_epoch = reader.i32()?;
    let metadata = match reader.take(1)? {
        [1] => Some(reader.string()?),
        _ => None,
    };
    Some((
        group,
        topic,
        partition,
        Some(Committed {
            offset,
            leader_epoch,
            metadata,
        }),
    ))
}

/// A record batch of `records` (key, value or tombstone), stamped `now_ms`.
pub fn batch(records: &[(Vec<u8>, Option<Vec<u8>>)], now_ms: i64) -> Vec<u8> {
    let mut builder = BatchBuilder::new(now_ms);
    for (key, value) in records {
        builder.record(Some(key), value.as_deref(), &[]);
    }
    builder.build()
}

/// A stored record: offset, key, value.
pub type StoredRecord = (i64, Option<Bytes>, Option<Bytes>);

/// The records of stored batches `bytes`, with their offsets, and the offset after the
/// last batch (past records compaction removed, so a reader moves on).
pub fn records(bytes: Vec<u8>) -> (Vec<StoredRecord>, Option<i64>) {
    let mut bytes = Bytes::from(bytes);
    let mut found = Vec::new();
    let mut next = None;
    while !bytes.is_empty() {
        let Ok(header) = strand_engine::BatchHeader::parse(&bytes) else {
            break;
        };
        let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) else {
            break;
        };
        next = Some(header.last_offset() + 1);
        found.extend(
            set.records
                .into_iter()
                .map(|record| (record.offset, record.key, record.value)),
        );
    }
    (found, next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn records_round_trip_through_a_batch() {
        let committed = Committed {
            offset: 42,
            leader_epoch: 0,
            metadata: Some("meta".into()),
        };
        let records = vec![
            (key("g", "t", 3), Some(value(&committed, 1000))),
            (key("g", "t", 4), None),
        ];
        let (found, next) = super::records(batch(&records, 1000));
        assert_eq!(next, Some(2), "the offset after the batch");
        let decoded: Vec<_> = found
            .into_iter()
            .map(|(_, key, value)| decode(&key.unwrap(), value.as_deref()).unwrap())
            .collect();
        assert_eq!(decoded[0], ("g".into(), "t".into(), 3, Some(committed)));
        assert_eq!(decoded[1], ("g".into(), "t".into(), 4, None));
    }

    #[test]
    fn groups_hash_to_partitions_as_kafka_does() {
        // Java: "my-group".hashCode() == -1906497762; its absolute value % 50 == 12.
        assert_eq!(partition_for("my-group", 50), 12);
        assert!(partition_for("", 16) < 16);
    }
}
