//! Producer ids for idempotent producers (Kafka's InitProducerId), handed out by the
//! metadata service in blocks: the end of the current block is persisted before any id in
//! it is given out, so a restart never hands out an id twice (it skips the rest of the
//! block instead, as Kafka does).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Ids reserved per write of the file.
pub const BLOCK: i64 = 1000;
const FILE: &str = "producer-ids";

/// The next id and the end of the reserved block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIds {
    next: i64,
    reserved_end: i64,
}

impl ProducerIds {
    /// The ids after the last block reserved in `data_dir` (0 on a new broker).
    pub fn load(data_dir: &Path) -> Result<ProducerIds, String> {
        let path = path(data_dir);
        let end = match std::fs::read(&path) {
            Ok(bytes) => {
                decode(&bytes).map_err(|reason| format!("{}: {reason}", path.display()))?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(format!("reading {}: {error}", path.display())),
        };
        Ok(ProducerIds {
            next: end,
            reserved_end: end,
        })
    }

    /// The next id, or `None` when a new block must be reserved first.
    pub fn take(&mut self) -> Option<i64> {
        (self.next < self.reserved_end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// The block end to persist before [`reserved`](Self::reserved) may be called.
    pub fn next_block_end(&self) -> i64 {
        self.next.saturating_add(BLOCK)
    }

    /// Records that ids up to `end` are reserved on disk.
    pub fn reserved(&mut self, end: i64) {
        self.reserved_end = end;
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Persists `end` as the reserved block end (temporary file, fsync, rename, fsync of the
/// directory). Blocking.
pub fn store(data_dir: &Path, end: i64) -> std::io::Result<()> {
    let path = path(data_dir);
    let temporary = path.with_extension("tmp");
    let value = end.to_be_bytes();
    let mut bytes = value.to_vec();
    bytes.extend_from_slice(&crc32c::crc32c(&value).to_be_bytes());
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    crate::directory::sync_parent(&path)
}

fn decode(bytes: &[u8]) -> Result<i64, String> {
    let (value, crc) = match bytes {
        [value @ .., a, b, c, d] if value.len() == 8 => {
            (value, u32::from_be_bytes([*a, *b, *c, *d]))
        }
        _ => return Err(format!("{} bytes, expected 12", bytes.len())),
    };
    if crc32c::crc32c(value) != crc {
        return Err("checksum mismatch".into());
    }
    let end = i64::from_be_bytes(value.try_into().map_err(|_| "short value".to_string())?);
    if end < 0 {
        return Err(format!("negative block end {end}"));
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids = ProducerIds::load(dir.path()).unwrap();
        assert_eq!(ids.take(), None);
        let end = ids.next_block_end();
        store(dir.path(), end).unwrap();
        ids.reserved(end);
        assert_eq!((ids.take(), ids.take()), (Some(0), Some(1)));
        let mut restarted = ProducerIds::load(dir.path()).unwrap();
        assert_eq!(restarted.take(), None);
        let end = restarted.next_block_end();
        restarted.reserved(end);
        assert_eq!(restarted.take(), Some(BLOCK));
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), 5000).unwrap();
        let file = dir.path().join(FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(ProducerIds::load(dir.path()).is_err());
    }
}
