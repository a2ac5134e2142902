//! Offsets a partition keeps beside its segments, in one small file (`marks`) replaced
//! atomically: the log start offset DeleteRecords moved (it can fall inside a segment, so
//! the segment files alone do not tell it), and the log cleaner's checkpoint (where the
//! dirty part of a compacted log starts) with the earliest delete horizon it left behind.
//!
//! Layout (big-endian, 36 bytes): magic `SPMK`, format version u32 (1), log start i64,
//! first dirty offset i64, next delete horizon i64 (-1: none), crc32c of what precedes it.

use std::path::{Path, PathBuf};

use crate::offset::Offset;

const FILE_NAME: &str = "marks";
const MAGIC: &[u8; 4] = b"SPMK";
const FORMAT_VERSION: u32 = 1;
const LEN: usize = 36;

/// A partition's marks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionMarks {
    /// The first offset still readable, when DeleteRecords set it; the first segment's base
    /// otherwise.
    pub log_start: Option<Offset>,
    /// Where the dirty part of a compacted log starts; `None` before its first clean.
    pub first_dirty: Option<Offset>,
    /// The earliest delete horizon (KIP-534) a cleaned batch carries.
    pub next_horizon_ms: Option<i64>,
}

/// The marks file of a partition directory.
pub fn marks_path(partition_dir: &Path) -> PathBuf {
    partition_dir.join(FILE_NAME)
}

impl PartitionMarks {
    pub fn encode(&self) -> Vec<u8> {
        let value = |offset: Option<Offset>| offset.map_or(-1, Offset::value);
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&value(self.log_start).to_be_bytes());
        out.extend_from_slice(&value(self.first_dirty).to_be_bytes());
        out.extend_from_slice(&self.next_horizon_ms.unwrap_or(-1).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&out).to_be_bytes());
        out
    }

    /// The marks in `bytes`, or why they are not a marks file.
    pub fn decode(bytes: &[u8]) -> Result<PartitionMarks, String> {
        if bytes.len() != LEN {
            return Err(format!("{} bytes where {LEN} were expected", bytes.len()));
        }
        if &bytes[..4] != MAGIC {
            return Err("bad magic".into());
        }
        let stored = u32::from_be_bytes(bytes[32..36].try_into().expect("4 bytes"));
        if crc32c::crc32c(&bytes[..32]) != stored {
            return Err("checksum mismatch".into());
        }
        let version = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(format!("format version {version} is not supported"));
        }
        let read = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(PartitionMarks {
            log_start: Offset::new(read(8)),
            first_dirty: Offset::new(read(16)),
            next_horizon_ms: Some(read(24)).filter(|horizon| *horizon >= 0),
        })
    }

    /// Reads a partition's marks; a missing or damaged file reads as none (logged): the
    /// log then starts at its first segment and is cleaned again from its start.
    pub async fn load(partition_dir: &Path, label: &str) -> PartitionMarks {
        let path = marks_path(partition_dir);
        match crate::directory::read_file(&path).await {
            Ok(None) => PartitionMarks::default(),
            Ok(Some(bytes)) => PartitionMarks::decode(&bytes).unwrap_or_else(|reason| {
                tracing::warn!(partition = label, %reason, "ignoring a damaged marks file");
                PartitionMarks::default()
            }),
            Err(error) => {
                tracing::warn!(partition = label, %error, "cannot read the marks file");
                PartitionMarks::default()
            }
        }
    }

    /// Replaces a partition's marks durably.
    pub async fn store(&self, partition_dir: &Path) -> std::io::Result<()> {
        crate::directory::write_atomic(&marks_path(partition_dir), self.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_damage_is_detected() {
        let marks = PartitionMarks {
            log_start: Offset::new(42),
            first_dirty: None,
            next_horizon_ms: Some(1_000),
        };
        let bytes = marks.encode();
        assert_eq!(PartitionMarks::decode(&bytes), Ok(marks));
        assert_eq!(
            PartitionMarks::decode(&PartitionMarks::default().encode()),
            Ok(PartitionMarks::default())
        );
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(PartitionMarks::decode(&damaged).is_err(), "flip at {at}");
        }
    }
}
