//! `strand dump-log` on segment files written the way the engine writes them: every batch
//! listed with its offsets and CRC status, damage reported without hiding later batches,
//! zero padding told apart from garbage, index files listed, and the exit status telling
//! a script whether the log is clean.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use strand_engine::batch::check_batch;
use strand_engine::batch_builder::BatchBuilder;
use strand_engine::segment_index::SegmentIndex;
use strand_engine::{Offset, ValidatedBatch};

/// Writes a segment of `count` batches (two records each) from offset 100, with its index
/// files, and returns the log's path and each batch's start position.
fn segment(dir: &Path, count: usize) -> (PathBuf, Vec<usize>) {
    let base = Offset::new(100).unwrap();
    let mut index = SegmentIndex::new(base, 200);
    let mut log = Vec::new();
    let mut positions = Vec::new();
    for number in 0..count {
        let mut builder = BatchBuilder::new(1_700_000_000_000 + i64::try_from(number).unwrap());
        builder
            .record(Some(b"key"), Some(&[7; 150]), &[])
            .record(None, Some(b"second"), &[]);
        let mut batch = ValidatedBatch::new(builder.build(), 1 << 20).unwrap();
        batch.assign(index.next_offset(), 3);
        index.observe(
            &check_batch(&batch.to_vec()).unwrap(),
            u32::try_from(batch.len()).unwrap(),
        );
        positions.push(log.len());
        log.extend_from_slice(&batch.to_vec());
    }
    let path = dir.join("00000000000000000100.log");
    std::fs::write(&path, &log).unwrap();
    let (offsets, times) = index.encode_files();
    std::fs::write(path.with_extension("index"), offsets).unwrap();
    std::fs::write(path.with_extension("timeindex"), times).unwrap();
    (path, positions)
}

fn dump(path: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_strand"))
        .arg("dump-log")
        .arg(path)
        .output()
        .unwrap();
    let text =
        String::from_utf8(output.stdout).unwrap() + &String::from_utf8(output.stderr).unwrap();
    (output.status.code().unwrap(), text)
}

fn batch_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| line.starts_with("baseOffset:"))
        .collect()
}

#[test]
fn a_clean_log_lists_every_batch_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = segment(dir.path(), 5);
    let (status, text) = dump(&path);
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("Log starting offset: 100"), "{text}");
    let lines = batch_lines(&text);
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].starts_with("baseOffset: 100 lastOffset: 101 count: 2 "),
        "{}",
        lines[0]
    );
    assert!(
        lines[4].contains("baseOffset: 108 ") && lines[4].contains("partitionLeaderEpoch: 3"),
        "{}",
        lines[4]
    );
    assert!(
        lines
            .iter()
            .all(|line| line.contains("isvalid: true") && line.contains("CreateTime: 17000000000"))
    );
    assert!(text.contains("5 batches, 0 invalid"), "{text}");
}

#[test]
fn zero_padding_is_reported_and_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = segment(dir.path(), 3);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    bytes.resize(len + 100, 0);
    std::fs::write(&path, bytes).unwrap();
    let (status, text) = dump(&path);
    assert_eq!(status, 0, "{text}");
    assert!(
        text.contains(&format!("zero padding: 100 bytes from position {len}")),
        "{text}"
    );
}

#[test]
fn a_bad_crc_is_flagged_and_later_batches_still_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, positions) = segment(dir.path(), 4);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[positions[1] + 90] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let (status, text) = dump(&path);
    assert_eq!(status, 1, "{text}");
    let lines = batch_lines(&text);
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[1].contains("isvalid: false (batch crc32c is"),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("isvalid: true"), "{}", lines[2]);
    assert!(text.contains("4 batches, 1 invalid"), "{text}");
}

#[test]
fn garbage_and_torn_tails_are_reported_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let (path, positions) = segment(dir.path(), 3);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..positions[2] + 70]).unwrap();
    let (status, text) = dump(&path);
    assert_eq!(status, 1, "{text}");
    assert!(
        text.contains(&format!(
            "not a batch at position {} (70 bytes",
            positions[2]
        )),
        "{text}"
    );
    assert_eq!(batch_lines(&text).len(), 2);
}

#[test]
fn index_files_list_their_entries_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (path, positions) = segment(dir.path(), 6);
    let (status, text) = dump(&path.with_extension("index"));
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("next offset: 112"), "{text}");
    assert!(
        text.contains(&format!("offset: 102 position: {}", positions[1])),
        "{text}"
    );
    let (status, text) = dump(&path.with_extension("timeindex"));
    assert_eq!(status, 0, "{text}");
    assert!(
        text.contains("timestamp before: 1700000000000 offset: 102"),
        "{text}"
    );
    std::fs::write(path.with_extension("index"), b"not an index").unwrap();
    let (status, text) = dump(&path.with_extension("index"));
    assert_eq!(status, 1, "{text}");
    assert!(text.contains("damaged index"), "{text}");
}

#[test]
fn other_files_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "hello").unwrap();
    let (status, text) = dump(&path);
    assert_eq!(status, 2);
    assert!(
        text.contains("is not a segment file (expected .log, .index or .timeindex)"),
        "{text}"
    );
}
