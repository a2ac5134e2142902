//! What the log cleaner keeps of one batch, decided without I/O (Kafka's
//! `MemoryRecords.filterTo` with `Cleaner.shouldRetainRecord`).
//!
//! A record is kept when its offset is past what the pass indexed, or when it is the
//! latest record of its key; a record without a key is dropped (compacted topics hold only
//! keyed records); a tombstone (null value) is kept until its batch's delete horizon
//! (KIP-534) has passed. A batch that keeps a tombstone but has no horizon yet gets one:
//! the pass's time plus `delete.retention.ms`, stored in the base timestamp with attribute
//! bit 6, and the record timestamp deltas rewritten against it, so a later pass can drop
//! the tombstone. Rebuilt batches keep their base offset and last offset delta (so their
//! span and the producer's last sequence stay), their codec, producer fields and epoch.
//! Control batches are kept as they are.

use crate::batch::BatchHeader;
use crate::batch_rewrite::{
    BatchFields, DELETE_HORIZON, OpenError, delete_horizon, empty_batch, encode_batch, open_records,
};
use crate::key_map::KeyMap;
use crate::records::{RecordError, parse};

/// The rules of one cleaning pass.
#[derive(Clone, Copy, Debug)]
pub struct FilterRules {
    /// Records at or past this offset were not indexed by the pass and are kept.
    pub map_end: i64,
    /// The pass's time.
    pub now_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// The most bytes a batch's records may decompress to.
    pub decompressed_bytes_max: usize,
}

/// What the cleaner does with a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Kept as stored.
    Unchanged,
    /// Replaced by these bytes: fewer records, or a new delete horizon.
    Rebuilt(Vec<u8>),
    /// No record is left; these bytes (a header of no records) stand in for it, because
    /// it is the last batch of its producer (Kafka keeps it for the producer's state).
    Emptied(Vec<u8>),
    /// No record is left: the batch joins a run the pass writes as one empty batch.
    Removed,
}

/// What filtering counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterCounts {
    pub records_kept: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

/// Why a batch could not be filtered (it is then kept as it is).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("batch at offset {base_offset}: {error}")]
    Records {
        base_offset: i64,
        error: RecordError,
    },
    #[error("batch at offset {base_offset} cannot be rebuilt: {detail}")]
    Rebuild { base_offset: i64, detail: String },
}

/// Filters the stored batch `bytes` (whose header is `header`) against the pass's key map.
/// `producer_last` says it is the last batch its producer has in the log.
pub fn filter_batch(
    bytes: &[u8],
    header: &BatchHeader,
    map: &KeyMap,
    rules: &FilterRules,
    producer_last: bool,
    counts: &mut FilterCounts,
) -> Result<Filtered, FilterError> {
    if header.is_control() {
        return Ok(Filtered::Unchanged);
    }
    let base_offset = header.base_offset;
    if header.record_count == 0 {
        return Ok(if producer_last && header.producer_id >= 0 {
            Filtered::Unchanged
        } else {
            Filtered::Removed
        });
    }
    let records = open_records(bytes, header, rules.decompressed_bytes_max)?;
    let count = usize::try_from(header.record_count).expect("record count checked positive");
    let parsed =
        parse(&records, count).map_err(|error| FilterError::Records { base_offset, error })?;
    let horizon = delete_horizon(header);
    let tombstones_expired = horizon.is_some_and(|horizon| rules.now_ms >= horizon);
    let mut kept = Vec::with_capacity(parsed.len());
    for record in &parsed {
        let offset = base_offset + i64::from(record.offset_delta);
        let keep = offset >= rules.map_end
            || record.key.is_some_and(|key| {
                let latest = map.latest(key).is_none_or(|latest| latest <= offset);
                latest && (record.value.is_some() || !tombstones_expired)
            });
        if keep {
            kept.push(*record);
        } else if record.value.is_none() && record.key.is_some() {
            counts.tombstones_removed += 1;
        }
    }
    counts.records_kept += u64::try_from(kept.len()).expect("fits");
    counts.records_removed += u64::try_from(parsed.len() - kept.len()).expect("fits");
    let keeps_tombstone = kept.iter().any(|record| record.value.is_none());
    let needs_horizon = keeps_tombstone && horizon.is_none();
    if kept.len() == parsed.len() && !needs_horizon {
        return Ok(Filtered::Unchanged);
    }
    if kept.is_empty() {
        return Ok(if producer_last && header.producer_id >= 0 {
            Filtered::Emptied(empty_batch(&BatchFields::of(header)))
        } else {
            Filtered::Removed
        });
    }
    rebuild(header, &kept, needs_horizon, rules).map(Filtered::Rebuilt)
}

/// A batch of `kept` records in place of `header`'s, with a delete horizon if `needs_horizon`.
fn rebuild(
    header: &BatchHeader,
    kept: &[crate::records::Record<'_>],
    needs_horizon: bool,
    rules: &FilterRules,
) -> Result<Vec<u8>, FilterError> {
    let base_offset = header.base_offset;
    let failed = |detail: String| FilterError::Rebuild {
        base_offset,
        detail,
    };
    let timestamp = |record: &crate::records::Record<'_>| {
        header.base_timestamp.checked_add(record.timestamp_delta)
    };
    let mut fields = BatchFields::of(header);
    if needs_horizon {
        fields.attributes |= DELETE_HORIZON;
        fields.base_timestamp = rules.now_ms.saturating_add(rules.delete_retention_ms);
    } else if delete_horizon(header).is_none() {
        fields.base_timestamp =
            timestamp(&kept[0]).ok_or_else(|| failed("timestamp overflows".into()))?;
    }
    if !header.is_log_append_time() {
        fields.max_timestamp = kept
            .iter()
            .filter_map(timestamp)
            .max()
            .unwrap_or(header.max_timestamp);
    }
    let mut records = Vec::new();
    for record in kept {
        let delta = timestamp(record)
            .and_then(|stamp| stamp.checked_sub(fields.base_timestamp))
            .ok_or_else(|| failed("timestamp delta overflows".into()))?;
        record.encode_with(&mut records, delta, record.offset_delta);
    }
    let codec = header
        .compression()
        .map_err(|error| failed(error.to_string()))?;
    let count = i32::try_from(kept.len()).expect("fewer records than the batch held");
    encode_batch(&fields, codec, &records, count).map_err(|error| failed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Compression, check_stored_batch};
    use crate::batch_builder::BatchBuilder;
    use crate::batch_rewrite::open_records;

    const DAY_MS: i64 = 86_400_000;

    /// A batch at offset `base` of `(key, value)` records, at time 1000 + index.
    fn batch(base: i64, records: &[(Option<&str>, Option<&str>)]) -> Vec<u8> {
        let mut builder = BatchBuilder::new(1_000);
        for (at, (key, value)) in records.iter().enumerate() {
            let time = 1_000 + i64::try_from(at).unwrap();
            builder.record_at(time, key.map(str::as_bytes), value.map(str::as_bytes), &[]);
        }
        let mut bytes = builder.build();
        bytes[..8].copy_from_slice(&base.to_be_bytes());
        bytes
    }

    fn map(entries: &[(&str, i64)]) -> KeyMap {
        let mut map = KeyMap::new(1 << 20);
        for (key, offset) in entries {
            map.insert(key.as_bytes(), *offset).unwrap();
        }
        map
    }

    fn rules(now_ms: i64) -> FilterRules {
        FilterRules {
            map_end: 100,
            now_ms,
            delete_retention_ms: DAY_MS,
            decompressed_bytes_max: 1 << 20,
        }
    }

    /// A kept record as (offset, key, value, timestamp).
    type Kept = (i64, Option<String>, Option<String>, i64);

    /// Filters and returns the outcome and the records it kept.
    fn kept(bytes: &[u8], map: &KeyMap, rules: &FilterRules, last: bool) -> (Filtered, Vec<Kept>) {
        let header = check_stored_batch(bytes).unwrap();
        let mut counts = FilterCounts::default();
        let filtered = filter_batch(bytes, &header, map, rules, last, &mut counts).unwrap();
        let out = match &filtered {
            Filtered::Unchanged => bytes.to_vec(),
            Filtered::Rebuilt(out) | Filtered::Emptied(out) => out.clone(),
            Filtered::Removed => return (filtered, Vec::new()),
        };
        let header = check_stored_batch(&out).unwrap();
        let records = open_records(&out, &header, 1 << 20).unwrap();
        let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8(b.to_vec()).unwrap());
        let list = parse(&records, usize::try_from(header.record_count).unwrap())
            .unwrap()
            .iter()
            .map(|r| {
                (
                    header.base_offset + i64::from(r.offset_delta),
                    text(r.key),
                    text(r.value),
                    header.base_timestamp + r.timestamp_delta,
                )
            })
            .collect();
        (filtered, list)
    }

    #[test]
    fn superseded_and_keyless_records_go_and_offsets_and_timestamps_stay() {
        let bytes = batch(
            10,
            &[
                (Some("a"), Some("1")),
                (None, Some("x")),
                (Some("b"), Some("2")),
                (Some("a"), Some("3")),
            ],
        );
        let (filtered, records) = kept(&bytes, &map(&[("a", 13), ("b", 12)]), &rules(5_000), false);
        assert!(matches!(filtered, Filtered::Rebuilt(_)));
        assert_eq!(
            records,
            [
                (12, Some("b".into()), Some("2".into()), 1_002),
                (13, Some("a".into()), Some("3".into()), 1_003)
            ]
        );
        let header = check_stored_batch(&match filtered {
            Filtered::Rebuilt(b) => b,
            _ => unreachable!(),
        })
        .unwrap();
        assert_eq!(header.last_offset_delta, 3, "the span stays");
        assert_eq!(header.max_timestamp, 1_003);
    }

    #[test]
    fn records_past_the_map_and_keys_only_seen_before_stay() {
        let bytes = batch(
            98,
            &[
                (Some("a"), Some("1")),
                (Some("a"), Some("2")),
                (Some("a"), Some("3")),
            ],
        );
        // "a" was last indexed at 99; offset 100 is past the map, so it stays too.
        let (_, records) = kept(&bytes, &map(&[("a", 99)]), &rules(5_000), false);
        assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), [99, 100]);
        let (filtered, _) = kept(
            &batch(0, &[(Some("z"), Some("1"))]),
            &map(&[]),
            &rules(5_000),
            false,
        );
        assert_eq!(filtered, Filtered::Unchanged);
    }

    #[test]
    fn tombstones_get_a_horizon_and_go_once_it_passed() {
        let bytes = batch(0, &[(Some("a"), None), (Some("b"), Some("1"))]);
        let (filtered, records) = kept(&bytes, &map(&[]), &rules(5_000), false);
        let Filtered::Rebuilt(stamped) = filtered else {
            panic!("{filtered:?}")
        };
        let header = check_stored_batch(&stamped).unwrap();
        assert_eq!(delete_horizon(&header), Some(5_000 + DAY_MS));
        assert_eq!(
            records[0].3, 1_000,
            "record timestamps survive the new base"
        );
        let (again, _) = kept(&stamped, &map(&[]), &rules(5_000 + DAY_MS - 1), false);
        assert_eq!(
            again,
            Filtered::Unchanged,
            "before the horizon the tombstone stays"
        );
        let (after, records) = kept(&stamped, &map(&[]), &rules(5_000 + DAY_MS), false);
        assert!(matches!(after, Filtered::Rebuilt(_)));
        assert_eq!(records, [(1, Some("b".into()), Some("1".into()), 1_001)]);
    }

    #[test]
    fn an_emptied_batch_is_kept_only_as_its_producers_last() {
        let mut builder = BatchBuilder::new(1_000);
        builder
            .producer(7, 0, 40)
            .record(Some(b"a"), Some(b"1"), &[]);
        let bytes = builder.build();
        let gone = map(&[("a", 50)]);
        assert_eq!(
            kept(&bytes, &gone, &rules(5_000), false).0,
            Filtered::Removed
        );
        let (filtered, records) = kept(&bytes, &gone, &rules(5_000), true);
        assert!(matches!(filtered, Filtered::Emptied(_)), "{filtered:?}");
        assert!(records.is_empty());
    }

    #[test]
    fn compressed_batches_are_rebuilt_in_their_codec() {
        let plain = batch(0, &[(Some("a"), Some("1")), (Some("a"), Some("2"))]);
        let header = check_stored_batch(&plain).unwrap();
        let records = open_records(&plain, &header, 1 << 20).unwrap();
        let zstd = encode_batch(&BatchFields::of(&header), Compression::Zstd, &records, 2).unwrap();
        let (filtered, records) = kept(&zstd, &map(&[("a", 1)]), &rules(5_000), false);
        let Filtered::Rebuilt(out) = filtered else {
            panic!()
        };
        assert_eq!(
            check_stored_batch(&out).unwrap().compression(),
            Ok(Compression::Zstd)
        );
        assert_eq!(records.len(), 1);
    }
}
