//! The controller's Raft log as raft-rs reads it, and the records that make it durable.
//!
//! [`QuorumLog`] holds in memory what this node's Raft log holds: the hard state (term,
//! vote, commit), the membership, the latest snapshot (with the [`ClusterState`] image as
//! its data) and the entries after it. The host makes it durable by appending the
//! [`LogRecord`]s the quorum hands out to a file, and rebuilds it at start by replaying
//! that file ([`LogRecord::decode_all`], then [`QuorumLog::replay`]).
//!
//! File format (`docs/format.md`, "Controller log"): records of
//! `[len: u32 LE][crc32c: u32 LE][kind: u8][payload]`, where `len` counts kind and payload,
//! the CRC covers them, and the payload is raft-rs's own protobuf encoding of a snapshot, an
//! entry list or a hard state. Replay stops at the first record that is torn or fails its
//! CRC: a crash can tear only the last append, which was never acknowledged to anyone.
//!
//! [`ClusterState`]: super::ClusterState

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// One change to the durable log, in the order the quorum hands them out.
#[derive(Clone, Debug, PartialEq)]
pub enum LogRecord {
    /// Replaces everything up to its index (and the membership).
    Snapshot(Snapshot),
    /// Entries that replace any held from the first one's index on.
    Entries(Vec<Entry>),
    HardState(HardState),
}

/// The largest record replay accepts: a claim past it is a torn or corrupt length.
pub const RECORD_BYTES_MAX: usize = 64 << 20;

const HEADER_LEN: usize = 8;
const KIND_SNAPSHOT: u8 = 1;
const KIND_ENTRIES: u8 = 2;
const KIND_HARD_STATE: u8 = 3;

/// What replay found in a log file.
#[derive(Debug)]
pub struct Replayed {
    pub records: Vec<LogRecord>,
    /// Bytes that form whole, valid records; anything after is a torn tail to cut.
    pub valid_len: usize,
}

impl LogRecord {
    /// Appends the record's framed bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (kind, payload) = match self {
            LogRecord::Snapshot(snapshot) => (KIND_SNAPSHOT, snapshot.write_to_bytes()),
            LogRecord::Entries(entries) => {
                let mut list = raft::eraftpb::Message::default();
                list.set_entries(entries.clone().into());
                (KIND_ENTRIES, list.write_to_bytes())
            }
            LogRecord::HardState(state) => (KIND_HARD_STATE, state.write_to_bytes()),
        };
        let payload = payload.expect("raft-rs messages always encode");
        let len = u32::try_from(payload.len() + 1).expect("records stay under 4 GiB");
        assert!(
            payload.len() < RECORD_BYTES_MAX,
            "a controller log record of {} bytes (bound {RECORD_BYTES_MAX})",
            payload.len()
        );
        let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind]), &payload);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&payload);
    }

    /// Reads every whole, valid record from the start of `bytes`.
    pub fn decode_all(bytes: &[u8]) -> Replayed {
        let mut records = Vec::new();
        let mut at = 0;
        while let Some((record, len)) = decode_one(&bytes[at..]) {
            records.push(record);
            at += len;
        }
        Replayed {
            records,
            valid_len: at,
        }
    }
}

fn decode_one(bytes: &[u8]) -> Option<(LogRecord, usize)> {
    let header = bytes.get(..HEADER_LEN)?;
    let len = usize::try_from(u32::from_le_bytes(header[..4].try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len == 0 || len > RECORD_BYTES_MAX {
        return None;
    }
    let body = bytes.get(HEADER_LEN..HEADER_LEN + len)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let payload = &body[1..];
    let record = match body[0] {
        KIND_SNAPSHOT => LogRecord::Snapshot(Snapshot::parse_from_bytes(payload).ok()?),
        KIND_ENTRIES => {
            let mut list = raft::eraftpb::Message::parse_from_bytes(payload).ok()?;
            LogRecord::Entries(list.take_entries().into())
        }
        KIND_HARD_STATE => LogRecord::HardState(HardState::parse_from_bytes(payload).ok()?),
        _ => return None,
    };
    Some((record, HEADER_LEN + len))
}

/// This node's Raft log, in memory.
#[derive(Clone, Debug, Default)]
pub struct QuorumLog {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Entries after the snapshot: `entries[0].index == snapshot index + 1`.
    entries: Vec<Entry>,
}

impl QuorumLog {
    /// An empty log whose membership is `voters` and `learners`.
    pub fn new(voters: Vec<u64>, learners: Vec<u64>) -> QuorumLog {
        let mut conf_state = ConfState::default();
        conf_state.set_voters(voters);
        conf_state.set_learners(learners);
        let mut log = QuorumLog {
            conf_state: conf_state.clone(),
            ..QuorumLog::default()
        };
        log.snapshot.mut_metadata().set_conf_state(conf_state);
        log
    }

    /// Rebuilds a log from the records a file held, in order; `None` for an empty file.
    pub fn replay(records: Vec<LogRecord>) -> Option<QuorumLog> {
        let mut log: Option<QuorumLog> = None;
        for record in records {
            let log = log.get_or_insert_with(QuorumLog::default);
            match record {
                LogRecord::Snapshot(snapshot) => log.install_snapshot(snapshot),
                LogRecord::Entries(entries) => log.append(&entries),
                LogRecord::HardState(state) => log.hard_state = state,
            }
        }
        log
    }

    /// The records that rebuild this log from nothing (a rewrite of the file).
    pub fn image(&self) -> Vec<LogRecord> {
        let mut records = vec![LogRecord::Snapshot(self.snapshot.clone())];
        if !self.entries.is_empty() {
            records.push(LogRecord::Entries(self.entries.clone()));
        }
        records.push(LogRecord::HardState(self.hard_state.clone()));
        records
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_hard_state(&mut self, state: HardState) {
        self.hard_state = state;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.set_commit(commit);
    }

    /// The snapshot, whose data is the cluster state at its index.
    pub fn snapshot_held(&self) -> &Snapshot {
        &self.snapshot
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |entry| entry.index)
    }

    /// Entries held after the snapshot.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Takes entries from the leader: they replace whatever is held from their first index.
    ///
    /// # Panics
    /// When they start inside the snapshot or leave a gap after the last entry (raft-rs
    /// never hands out either).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index >= self.first(),
            "entries from {} overwrite the snapshot up to {}",
            first.index,
            self.snapshot_index()
        );
        assert!(
            first.index <= self.last() + 1,
            "entries from {} leave a gap after {}",
            first.index,
            self.last()
        );
        let keep = usize::try_from(first.index - self.first()).expect("in memory");
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Replaces everything up to the snapshot's index with it (a snapshot from the leader).
    pub fn install_snapshot(&mut self, snapshot: Snapshot) {
        let metadata = snapshot.get_metadata();
        let index = metadata.index;
        self.entries.retain(|entry| entry.index > index);
        if self
            .entries
            .first()
            .is_some_and(|entry| entry.index != index + 1)
        {
            self.entries.clear();
        }
        self.conf_state = metadata.get_conf_state().clone();
        if self.hard_state.commit < index {
            self.hard_state.set_commit(index);
        }
        if self.hard_state.term < metadata.term {
            self.hard_state.set_term(metadata.term);
        }
        self.snapshot = snapshot;
    }

    /// Makes a snapshot at `applied` (an applied index this log holds) with `data`, and
    /// drops the entries it covers.
    ///
    /// # Panics
    /// When `applied` is not an entry this log holds.
    pub fn compact(&mut self, applied: u64, data: Vec<u8>) {
        let term = self
            .term(applied)
            .expect("compacting at an entry the log holds");
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let metadata = snapshot.mut_metadata();
        metadata.index = applied;
        metadata.term = term;
        metadata.set_conf_state(self.conf_state.clone());
        self.install_snapshot(snapshot);
    }
}

impl Storage for QuorumLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last() + 1,
            "entries up to {high} asked of a log ending at {}",
            self.last()
        );
        let from = usize::try_from(low - self.first()).expect("in memory");
        let to = usize::try_from(high - self.first()).expect("in memory");
        let mut entries = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.snapshot_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if index < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let at = usize::try_from(index - self.first()).expect("in memory");
        Ok(self.entries[at].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![u8::try_from(index % 256).expect("small")].into(),
            ..Entry::default()
        }
    }

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..HardState::default()
        }
    }

    #[test]
    fn replay_rebuilds_the_log_and_stops_at_a_torn_tail() {
        let mut log = QuorumLog::new(vec![1, 2, 3], vec![4]);
        let mut file = Vec::new();
        let mut records = log.image();
        records.push(LogRecord::Entries((1..=5).map(|i| entry(i, 1)).collect()));
        records.push(LogRecord::Entries(vec![entry(4, 2), entry(5, 2)]));
        records.push(LogRecord::HardState(hard_state(2, 1, 4)));
        for record in &records {
            record.encode(&mut file);
        }
        log.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>());
        log.append(&[entry(4, 2), entry(5, 2)]);
        log.set_hard_state(hard_state(2, 1, 4));

        let whole = file.len();
        let replayed = LogRecord::decode_all(&file);
        assert_eq!(replayed.valid_len, whole);
        let rebuilt = QuorumLog::replay(replayed.records).expect("not empty");
        assert_eq!(
            rebuilt.term(4),
            Ok(2),
            "the later entries replaced the earlier"
        );
        assert_eq!(rebuilt.term(3), Ok(1));
        assert_eq!(rebuilt.last(), 5);
        assert_eq!(rebuilt.hard_state(), &hard_state(2, 1, 4));
        assert_eq!(
            rebuilt.initial_state().expect("held").conf_state.learners,
            vec![4]
        );

        // A torn last record, or one whose bytes changed, is not replayed; nor is anything
        // after a damaged record.
        LogRecord::HardState(hard_state(3, 2, 5)).encode(&mut file);
        for cut in [whole + 1, whole + 8, file.len() - 1] {
            assert_eq!(LogRecord::decode_all(&file[..cut]).valid_len, whole);
        }
        let mut damaged = file.clone();
        damaged[whole + 9] ^= 1;
        assert_eq!(LogRecord::decode_all(&damaged).valid_len, whole);
        assert_eq!(LogRecord::decode_all(&file).valid_len, file.len());
        assert!(QuorumLog::replay(Vec::new()).is_none());
    }

    #[test]
    fn compaction_keeps_later_entries_and_the_image_rebuilds_it() {
        let mut log = QuorumLog::new(vec![1], vec![]);
        log.append(&(1..=10).map(|i| entry(i, 1 + i / 5)).collect::<Vec<_>>());
        log.set_commit(8);
        log.compact(7, b"state at 7".to_vec());
        assert_eq!(log.first_index(), Ok(8));
        assert_eq!(log.term(7), Ok(2));
        assert_eq!(
            log.term(6),
            Err(raft::Error::Store(StorageError::Compacted))
        );
        assert_eq!(
            log.entries(8, 11, None, GetEntriesContext::empty(false))
                .expect("held")
                .len(),
            3
        );
        let rebuilt = QuorumLog::replay(log.image()).expect("not empty");
        assert_eq!(rebuilt.snapshot_held(), log.snapshot_held());
        assert_eq!(rebuilt.entries, log.entries);
        assert_eq!(rebuilt.hard_state(), log.hard_state());
        assert_eq!(
            rebuilt.snapshot(0, 2).expect("held").get_data(),
            b"state at 7"
        );
    }
}
