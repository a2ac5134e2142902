//! Recovery from damaged files.
//!
//! Each test writes batches through real shards, stops, damages the partition's files the
//! way a crash or a bad disk would (a torn batch, flipped bytes in the middle or at the
//! tail, a zero-filled tail, missing or damaged indexes, a short sealed segment), starts
//! again and checks: every valid batch before the damage is still there byte for byte, the
//! cut is reported with its position and reason, nothing corrupt is ever served, and new
//! appends continue at the right offset.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};

use strand_engine::batch::BatchHeader;
use strand_engine::recovery::RecoveryReport;
use strand_engine::{EngineConfig, Offset, ReadError};
use support::{
    TestEngine, as_sent, batch, create_topic, forget_clean_shutdown, read_all, test_config,
    validated,
};

const TOPIC: &str = "damaged";

/// A stopped broker holding `count` batches in one partition, segments of `segment_bytes`.
struct Written {
    dir: tempfile::TempDir,
    config: EngineConfig,
    /// `(base offset, bytes as sent)` of every batch.
    batches: Vec<(i64, Vec<u8>)>,
}

fn write(count: u64, segment_bytes: &str) -> Written {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = test_config(dir.path(), 1);
    let engine = TestEngine::start(config.clone());
    let segment_bytes = segment_bytes.to_string();
    let batches = engine.run(move |router| async move {
        let settings = [
            ("segment.bytes", segment_bytes.as_str()),
            ("index.interval.bytes", "512"),
            ("segment.ms", "315360000000"),
        ];
        create_topic(&router, TOPIC, 1, &settings).await;
        let mut batches = Vec::new();
        for seed in 0..count {
            let bytes = batch(
                seed,
                1 + usize::try_from(seed % 3).unwrap(),
                300,
                1_700_000_000_000,
            );
            let outcome = router
                .append(TOPIC, 0, validated(bytes.clone()))
                .await
                .expect("append");
            batches.push((outcome.base_offset.value(), bytes));
        }
        batches
    });
    assert!(engine.stop().clean);
    Written {
        dir,
        config,
        batches,
    }
}

impl Written {
    fn partition_dir(&self) -> PathBuf {
        support::partition_dir(self.dir.path(), TOPIC, 0)
    }

    fn logs(&self) -> Vec<PathBuf> {
        support::segment_logs(&self.partition_dir())
    }

    /// Starts again (as after a crash unless `clean`), returning the engine and its report.
    fn restart(&self, clean: bool) -> (TestEngine, RecoveryReport) {
        if !clean {
            forget_clean_shutdown(self.dir.path());
        }
        let engine = TestEngine::start(self.config.clone());
        let report = engine
            .recovery_reports()
            .into_iter()
            .next()
            .expect("one partition");
        (engine, report)
    }

    /// Checks the partition holds exactly the first `kept` batches and takes new appends
    /// right after them.
    fn check_kept(&self, engine: &TestEngine, kept: usize) {
        let expected: Vec<(i64, Vec<u8>)> = self.batches[..kept].to_vec();
        engine.run(move |router| async move {
            let stored = read_all(&router, TOPIC, 0, 0)
                .await
                .expect("the kept batches read back");
            let stored: Vec<(i64, Vec<u8>)> = stored
                .into_iter()
                .map(|(base, bytes)| (base, as_sent(&bytes)))
                .collect();
            assert_eq!(
                stored, expected,
                "exactly the valid batches before the damage remain"
            );
            let next = expected.last().map_or(0, |(base, bytes)| {
                base + i64::from(BatchHeader::parse(bytes).unwrap().record_count)
            });
            let outcome = router
                .append(TOPIC, 0, validated(batch(999, 2, 100, 1)))
                .await
                .expect("append after recovery");
            assert_eq!(
                outcome.base_offset.value(),
                next,
                "appends continue after the last kept batch"
            );
            let all = read_all(&router, TOPIC, 0, 0)
                .await
                .expect("reads after recovery");
            assert_eq!(all.len(), expected.len() + 1);
        });
    }
}

/// Byte positions where each batch of a log file starts, and the file's length.
fn batch_positions(log: &Path) -> (Vec<u64>, u64) {
    let bytes = std::fs::read(log).expect("log file");
    let mut positions = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        positions.push(u64::try_from(at).unwrap());
        at += BatchHeader::parse(&bytes[at..]).expect("batch").total_len();
    }
    (positions, u64::try_from(bytes.len()).unwrap())
}

fn flip_byte(path: &Path, position: u64) {
    let mut bytes = std::fs::read(path).expect("file");
    bytes[usize::try_from(position).unwrap()] ^= 0x55;
    std::fs::write(path, bytes).expect("write back");
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("file")
        .set_len(len)
        .expect("resize");
}

fn only_cut(report: &RecoveryReport) -> &strand_engine::recovery::RecoveryCut {
    assert_eq!(report.cuts.len(), 1, "one cut expected: {report:?}");
    &report.cuts[0]
}

#[test]
fn a_torn_last_batch_is_cut_and_everything_before_it_kept() {
    let written = write(10, "1000000");
    let log = &written.logs()[0];
    let (positions, len) = batch_positions(log);
    set_len(log, positions[9] + 30);
    let (engine, report) = written.restart(false);
    let cut = only_cut(&report);
    assert_eq!((cut.position, cut.bytes), (positions[9], 30));
    assert!(cut.reason.contains("torn"), "{cut:?}");
    assert!(len > positions[9] + 30);
    written.check_kept(&engine, 9);
}

#[test]
fn flipped_bytes_in_the_middle_cut_the_log_at_the_damaged_batch() {
    let written = write(12, "1000000");
    let log = &written.logs()[0];
    let (positions, len) = batch_positions(log);
    flip_byte(log, positions[5] + 100);
    let (engine, report) = written.restart(false);
    let cut = only_cut(&report);
    assert_eq!(
        (cut.position, cut.bytes),
        (positions[5], len - positions[5])
    );
    assert!(cut.reason.contains("crc32c"), "{cut:?}");
    written.check_kept(&engine, 5);
}

#[test]
fn flipped_bytes_in_the_last_batch_cut_only_that_batch() {
    let written = write(6, "1000000");
    let log = &written.logs()[0];
    let (positions, len) = batch_positions(log);
    flip_byte(log, len - 3);
    let (engine, report) = written.restart(false);
    let cut = only_cut(&report);
    assert_eq!(
        (cut.position, cut.bytes),
        (positions[5], len - positions[5])
    );
    written.check_kept(&engine, 5);
}

#[test]
fn a_zero_filled_tail_is_removed_and_every_batch_kept() {
    let written = write(7, "1000000");
    let log = &written.logs()[0];
    let (_, len) = batch_positions(log);
    set_len(log, len + 10_000);
    let (engine, report) = written.restart(false);
    let cut = only_cut(&report);
    assert_eq!((cut.position, cut.bytes), (len, 10_000));
    assert!(cut.reason.contains("zero-filled"), "{cut:?}");
    written.check_kept(&engine, 7);
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt() {
    let written = write(30, "3000");
    let logs = written.logs();
    assert!(logs.len() >= 4, "small segments roll: {logs:?}");
    std::fs::remove_file(logs[0].with_extension("index")).expect("remove index");
    flip_byte(&logs[1].with_extension("timeindex"), 45);
    set_len(&logs[2].with_extension("index"), 10);
    let (engine, report) = written.restart(true);
    assert_eq!(
        report.scanned, 3,
        "the three segments with bad indexes are scanned: {report:?}"
    );
    assert!(
        report.cuts.is_empty(),
        "rebuilding an index cuts nothing: {report:?}"
    );
    assert!(
        logs[0].with_extension("index").exists(),
        "the rebuilt index is saved"
    );
    written.check_kept(&engine, 30);
    engine.stop();
    let (_, report) = written.restart(true);
    assert_eq!(
        report.scanned, 0,
        "saved indexes are used on the next start: {report:?}"
    );
}

#[test]
fn a_short_sealed_segment_is_cut_and_the_segments_after_it_dropped() {
    let written = write(30, "3000");
    let logs = written.logs();
    let (positions, _) = batch_positions(&logs[1]);
    set_len(&logs[1], positions[1] + 20);
    let (engine, report) = written.restart(false);
    assert_eq!(report.cuts[0].position, positions[1]);
    assert!(
        report.cuts[1..]
            .iter()
            .all(|cut| cut.reason == "follows a cut segment"),
        "{report:?}"
    );
    assert_eq!(
        report.cuts.len(),
        logs.len() - 1,
        "every later segment is dropped: {report:?}"
    );
    let first_segment_batches = batch_positions(&logs[0]).0.len();
    written.check_kept(&engine, first_segment_batches + 1);
    assert!(!logs[2].exists(), "dropped segment files are removed");
}

#[test]
fn corruption_inside_a_trusted_sealed_segment_is_never_served() {
    let written = write(30, "3000");
    let logs = written.logs();
    let (positions, _) = batch_positions(&logs[0]);
    flip_byte(&logs[0], positions[1] + 80);
    let (engine, report) = written.restart(true);
    assert_eq!(
        report.scanned, 0,
        "a clean start trusts intact indexes: {report:?}"
    );
    let damaged = written.batches[1].0;
    let later = written.batches[positions.len()].0;
    engine.run(move |router| async move {
        let read = router
            .read(TOPIC, 0, Offset::new(damaged).unwrap(), 1 << 20)
            .await;
        assert!(
            matches!(read, Err(ReadError::Corrupt { .. })),
            "corrupt batch served: {read:?}"
        );
        let message = read.unwrap_err().to_string();
        assert!(
            message.contains("crc32c") && message.contains(".log"),
            "{message}"
        );
        let after = router
            .read(TOPIC, 0, Offset::new(later).unwrap(), 1 << 20)
            .await;
        assert!(
            after.is_ok_and(|outcome| !outcome.bytes.is_empty()),
            "later segments still read"
        );
    });
}
