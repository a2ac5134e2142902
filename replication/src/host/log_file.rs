//! The controller log's file: the records [`Quorum`](crate::controller::Quorum) hands out,
//! appended and fdatasync'd before the messages that depend on them are sent.
//!
//! On open, the file is read whole and cut after its last whole, valid record: a crash
//! may have torn the record being appended, and nothing after a bad record can be trusted
//! (records are only ever appended). A rewrite (the log's whole image, after compaction
//! or on a fresh log) goes to a temporary file that replaces the log by rename, with the
//! directory fsync'd, so a crash leaves either the old log or the new one. The directory
//! is locked (`flock` on `controller.lock`) for as long as the log is open: two processes
//! appending to one Raft log would corrupt the votes it keeps.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::controller::{LogRecord, RECORD_BYTES_MAX};

/// The log file in its directory.
pub const LOG_FILE_NAME: &str = "controller.log";
const REWRITE_FILE_NAME: &str = "controller.log.rewrite";
const LOCK_FILE_NAME: &str = "controller.lock";

/// The most bytes a log file may hold when opened. Compaction keeps it far smaller: a
/// snapshot of the cluster state and up to `log_entries_max` entries.
pub const LOG_FILE_BYTES_MAX: u64 = 4 * RECORD_BYTES_MAX as u64;

/// Why the log file could not be read or written. The controller stops: a quorum member
/// that cannot persist must not vote or acknowledge.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is {len} bytes, more than a controller log may hold ({max})")]
    TooLarge { path: PathBuf, len: u64, max: u64 },
    #[error(
        "the controller log in {dir} is in use by another process (another strand serve with this data directory?)"
    )]
    InUse { dir: PathBuf },
}

/// An open controller log.
#[derive(Debug)]
pub struct LogFile {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    len: u64,
    /// Held (locked) while the log is open.
    _lock: File,
}

impl LogFile {
    /// Opens (or creates) the log in `dir`, returning the records it holds and how many
    /// torn or bad bytes were cut from its end.
    pub fn open(dir: &Path) -> Result<(LogFile, Vec<LogRecord>, u64), LogFileError> {
        std::fs::create_dir_all(dir).map_err(|source| io("creating", dir, source))?;
        let lock = lock(dir)?;
        let path = dir.join(LOG_FILE_NAME);
        // A rewrite that did not reach its rename is not the log.
        let _ = std::fs::remove_file(dir.join(REWRITE_FILE_NAME));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| io("opening", &path, source))?;
        let len = file
            .metadata()
            .map_err(|source| io("reading the size of", &path, source))?
            .len();
        if len > LOG_FILE_BYTES_MAX {
            return Err(LogFileError::TooLarge {
                path,
                len,
                max: LOG_FILE_BYTES_MAX,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(|source| io("reading", &path, source))?;
        let replayed = LogRecord::decode_all(&bytes);
        let valid = u64::try_from(replayed.valid_len).expect("usize fits u64");
        let cut = u64::try_from(bytes.len()).expect("usize fits u64") - valid;
        if cut > 0 {
            tracing::warn!(
                path = %path.display(),
                cut_bytes = cut,
                "controller log: cutting a torn or damaged tail"
            );
            file.set_len(valid)
                .map_err(|source| io("cutting the torn tail of", &path, source))?;
            file.sync_all()
                .map_err(|source| io("fsync of", &path, source))?;
        }
        // Appends go right after the last good record, not where the read stopped.
        file.seek(SeekFrom::Start(valid))
            .map_err(|source| io("seeking in", &path, source))?;
        let log = LogFile {
            dir: dir.to_owned(),
            path,
            file,
            len: valid,
            _lock: lock,
        };
        Ok((log, replayed.records, cut))
    }

    /// Appends `records` and makes them durable.
    pub fn append(&mut self, records: &[LogRecord]) -> Result<(), LogFileError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for record in records {
            record.encode(&mut bytes);
        }
        self.file
            .write_all(&bytes)
            .map_err(|source| io("appending to", &self.path, source))?;
        self.file
            .sync_data()
            .map_err(|source| io("fdatasync of", &self.path, source))?;
        self.len += u64::try_from(bytes.len()).expect("usize fits u64");
        Ok(())
    }

    /// Replaces the whole log with `records`, atomically.
    pub fn rewrite(&mut self, records: &[LogRecord]) -> Result<(), LogFileError> {
        let mut bytes = Vec::new();
        for record in records {
            record.encode(&mut bytes);
        }
        let temporary = self.dir.join(REWRITE_FILE_NAME);
        let mut file =
            File::create(&temporary).map_err(|source| io("creating", &temporary, source))?;
        file.write_all(&bytes)
            .map_err(|source| io("writing", &temporary, source))?;
        file.sync_all()
            .map_err(|source| io("fsync of", &temporary, source))?;
        std::fs::rename(&temporary, &self.path)
            .map_err(|source| io("renaming over", &self.path, source))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| io("fsync of directory", &self.dir, source))?;
        // The renamed file's handle is at its end, where the next append goes.
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|source| io("reopening", &self.path, source))?;
        self.len = u64::try_from(bytes.len()).expect("usize fits u64");
        Ok(())
    }

    /// Bytes of log on disk.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the directory's lock; refused while another process holds it.
fn lock(dir: &Path) -> Result<File, LogFileError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| io("opening", &path, source))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LogFileError::InUse {
            dir: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(io("locking", &path, source)),
    }
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> LogFileError {
    LogFileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{Entry, HardState};

    use super::*;

    fn hard_state(term: u64) -> LogRecord {
        LogRecord::HardState(HardState {
            term,
            ..HardState::default()
        })
    }

    fn entries(index: u64) -> LogRecord {
        LogRecord::Entries(vec![Entry {
            index,
            term: 1,
            data: vec![7; 40].into(),
            ..Entry::default()
        }])
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "strand-log-file-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn appends_and_rewrites_are_read_back_and_a_torn_tail_is_cut() {
        let dir = temp_dir("torn");
        let (mut log, records, cut) = LogFile::open(&dir).unwrap();
        assert!(records.is_empty() && cut == 0 && log.is_empty());
        log.rewrite(&[hard_state(1), entries(1)]).unwrap();
        log.append(&[entries(2), hard_state(2)]).unwrap();
        let whole = log.len();
        drop(log);

        let (log, records, cut) = LogFile::open(&dir).unwrap();
        assert_eq!(
            records,
            vec![hard_state(1), entries(1), entries(2), hard_state(2)]
        );
        assert_eq!((cut, log.len()), (0, whole));
        drop(log);

        // A crash tore the next append: half a record follows the last whole one.
        let mut torn = Vec::new();
        entries(3).encode(&mut torn);
        torn.truncate(torn.len() / 2);
        let path = dir.join(LOG_FILE_NAME);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn).unwrap();
        drop(file);
        let (mut log, records, cut) = LogFile::open(&dir).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(cut, u64::try_from(torn.len()).unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            whole,
            "the tail is cut"
        );
        log.append(&[entries(3)]).unwrap();
        drop(log);
        let (_, records, _) = LogFile::open(&dir).unwrap();
        assert_eq!(records.last(), Some(&entries(3)), "appends follow the cut");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_opener_is_refused_while_the_log_is_open() {
        let dir = temp_dir("lock");
        let (log, _, _) = LogFile::open(&dir).unwrap();
        let refused = LogFile::open(&dir).err().unwrap();
        assert!(matches!(refused, LogFileError::InUse { .. }), "{refused}");
        drop(log);
        LogFile::open(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unfinished_rewrite_is_not_the_log() {
        let dir = temp_dir("rewrite");
        let (mut log, _, _) = LogFile::open(&dir).unwrap();
        log.append(&[hard_state(3)]).unwrap();
        drop(log);
        std::fs::write(dir.join(REWRITE_FILE_NAME), b"half a rewrite").unwrap();
        let (mut log, records, _) = LogFile::open(&dir).unwrap();
        assert_eq!(records, vec![hard_state(3)]);
        assert!(!dir.join(REWRITE_FILE_NAME).exists());
        log.rewrite(&[hard_state(4)]).unwrap();
        log.append(&[entries(9)]).unwrap();
        drop(log);
        let (_, records, _) = LogFile::open(&dir).unwrap();
        assert_eq!(records, vec![hard_state(4), entries(9)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
