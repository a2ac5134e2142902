//! What a shard's replicas keep beside their logs: for each partition, the committed
//! offset it knows and the last chain epoch it was attached in (what
//! [`Recovered`](crate::chain::Recovered) needs besides the log itself).
//!
//! One file per shard, `DATA_DIR/chains/shard-N`, replaced whole (written to
//! `shard-N.new`, fsynced, renamed, the directory fsynced), so a crash leaves the old
//! file or the new one. Layout: `[crc32c: u32 LE][rkyv image of the entries]`. A committed
//! offset read back lower than it was is safe (the replica only cuts to it after a break,
//! as a learner whose chain holds everything committed); the attached epoch is written
//! before the sync that carries it is reported done.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A partition, by topic id and index.
pub type PartitionRef = ([u8; 16], u32);

/// One partition's stored replica state.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct StoredReplica {
    pub committed: i64,
    pub attached_epoch: Option<u64>,
}

#[derive(Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Image {
    entries: Vec<(([u8; 16], u32), StoredReplica)>,
}

/// The file of one shard.
#[derive(Debug)]
pub struct StateFile {
    dir: PathBuf,
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path, shard: usize) -> StateFile {
        StateFile {
            dir: dir.to_path_buf(),
            path: dir.join(format!("shard-{shard}")),
        }
    }

    /// Every shard's stored state under `dir` (partitions may have moved between shards
    /// since it was written: for each, the entry with the latest attached epoch wins).
    pub fn load_all(dir: &Path) -> std::io::Result<BTreeMap<PartitionRef, StoredReplica>> {
        let mut all: BTreeMap<PartitionRef, StoredReplica> = BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(all),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let path = entry?.path();
            let is_state = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("shard-") && !name.ends_with(".new"));
            if !is_state {
                continue;
            }
            for (key, stored) in read(&path)? {
                let newer = all.get(&key).is_none_or(|held| {
                    (stored.attached_epoch, stored.committed)
                        > (held.attached_epoch, held.committed)
                });
                if newer {
                    all.insert(key, stored);
                }
            }
        }
        Ok(all)
    }

    /// Replaces the file with `entries`, durably.
    pub fn store(&self, entries: &BTreeMap<PartitionRef, StoredReplica>) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let image = Image {
            entries: entries.iter().map(|(key, value)| (*key, *value)).collect(),
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&image)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        let staged = self.path.with_extension("new");
        let mut file = std::fs::File::create(&staged)?;
        file.write_all(&crc32c::crc32c(&bytes).to_le_bytes())?;
        file.write_all(&bytes)?;
        file.sync_data()?;
        std::fs::rename(&staged, &self.path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

fn read(path: &Path) -> std::io::Result<Vec<(PartitionRef, StoredReplica)>> {
    let bytes = std::fs::read(path)?;
    let invalid = |reason: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {reason}", path.display()),
        )
    };
    let (crc, image) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| invalid("shorter than its checksum".into()))?;
    let computed = crc32c::crc32c(image);
    if u32::from_le_bytes(*crc) != computed {
        return Err(invalid(format!(
            "checksum {:#010x} stored, {computed:#010x} computed",
            u32::from_le_bytes(*crc)
        )));
    }
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(image.len());
    aligned.extend_from_slice(image);
    let image = rkyv::from_bytes::<Image, rkyv::rancor::Error>(&aligned)
        .map_err(|error| invalid(error.to_string()))?;
    Ok(image.entries)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn states_round_trip_and_the_latest_attachment_wins_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let key = ([7; 16], 3);
        let older = StoredReplica {
            committed: 50,
            attached_epoch: Some(2),
        };
        let newer = StoredReplica {
            committed: 40,
            attached_epoch: Some(3),
        };
        StateFile::new(dir.path(), 0)
            .store(&BTreeMap::from([(key, older)]))
            .unwrap();
        StateFile::new(dir.path(), 1)
            .store(&BTreeMap::from([(key, newer), (([1; 16], 0), older)]))
            .unwrap();
        let all = StateFile::load_all(dir.path()).unwrap();
        assert_eq!(all[&key], newer);
        assert_eq!(all.len(), 2);
        // A damaged file is refused with its name, not read as empty.
        let path = dir.path().join("shard-0");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let error = StateFile::load_all(dir.path()).unwrap_err();
        assert!(error.to_string().contains("shard-0"), "{error}");
    }
}
