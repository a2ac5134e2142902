//! Crash test: acknowledged appends survive SIGKILL at any moment.
//!
//! This binary runs twice over. As the parent it starts itself again as a child writer
//! (`STRAND_CRASH_CHILD_DIR` set). The child opens the data directory (recovering whatever
//! the previous child left), runs eight concurrent writers appending to two partitions on
//! two shards with small segments, and prints a line for each append once it is
//! acknowledged, which happens only after fdatasync. The parent kills the child with
//! SIGKILL after a random number of acknowledgements (zero means during startup and
//! recovery), sometimes lets the next child recover and write on the crashed state, and
//! every few kills opens the directory itself and checks that every acknowledged batch is
//! present at its offset, byte for byte, and that everything readable is a valid batch the
//! child wrote, at contiguous offsets. It runs until 40 kills or 30 seconds.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use strand_engine::varint::get_varlong;
use strand_engine::{EngineConfig, Router, ShardSet, TopicError, TopicSpec};
use support::{TestEngine, as_sent, batch, read_all, test_config, validated};

const TOPIC: &str = "crash";
const KILLS_MAX: usize = 40;
const RUN_TIME_MAX: Duration = Duration::from_secs(30);
const CHILD_LIFETIME_MAX: Duration = Duration::from_secs(20);
const WRITERS: u64 = 8;

fn config(dir: &Path) -> EngineConfig {
    test_config(dir, 2)
}

/// The batch the child writes for sequence number `seq`: varied record counts and sizes, so
/// writes end anywhere inside a block.
fn batch_for(seq: u64) -> Vec<u8> {
    let records = 1 + usize::try_from(seq % 6).unwrap();
    let value_len = usize::try_from((seq * 7919) % 3000).unwrap();
    batch(seq, records, value_len, 1_700_000_000_000)
}

/// The sequence number a stored batch carries in its first record's key.
fn seq_of(stored: &[u8]) -> u64 {
    let mut at = 61;
    let (_, len) = get_varlong(&stored[at..], 5).unwrap(); // record length
    at += len + 1; // and the attributes byte
    for _ in 0..3 {
        let (_, len) = get_varlong(&stored[at..], 10).unwrap(); // timestamp, offset delta, key length
        at += len;
    }
    u64::from_be_bytes(stored[at..at + 8].try_into().unwrap())
}

fn main() {
    if let Ok(dir) = std::env::var("STRAND_CRASH_CHILD_DIR") {
        let first_seq = std::env::var("STRAND_CRASH_FIRST_SEQ")
            .unwrap()
            .parse()
            .unwrap();
        child(Path::new(&dir), first_seq);
        return;
    }
    parent();
}

fn child(dir: &Path, first_seq: u64) {
    let set = ShardSet::start(config(dir), move |router: Router| async move {
        if router.shard().index() != 0 {
            return;
        }
        let spec = TopicSpec {
            name: TOPIC.into(),
            partitions: 2,
            configs: vec![
                ("segment.bytes".into(), "65536".into()),
                ("index.interval.bytes".into(), "1024".into()),
            ],
            id: None,
        };
        match router.create_topic(spec).await {
            Ok(_) | Err(TopicError::AlreadyExists { .. }) => {}
            Err(error) => panic!("create topic: {error}"),
        }
        let writers =
            (0..WRITERS).map(|writer| write_forever(router.clone(), first_seq + writer, WRITERS));
        futures::future::join_all(writers).await;
    })
    .unwrap();
    std::thread::sleep(CHILD_LIFETIME_MAX);
    set.shutdown().unwrap();
}

async fn write_forever(router: Router, mut seq: u64, stride: u64) {
    let started = Instant::now();
    while started.elapsed() < CHILD_LIFETIME_MAX {
        let partition = u32::try_from(seq % 2).unwrap();
        let outcome = router
            .append(TOPIC, partition, validated(batch_for(seq)))
            .await
            .unwrap();
        let line = format!("ack {partition} {} {seq}\n", outcome.base_offset.value());
        std::io::stdout().lock().write_all(line.as_bytes()).unwrap();
        seq += stride;
    }
}

/// A child process, killed when dropped, on every path.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("STRAND_CRASH_SEED").map_or(7, |seed| seed.parse().unwrap()),
    );
    let mut acked: BTreeMap<(u32, i64), u64> = BTreeMap::new();
    let started = Instant::now();
    let (mut kills, mut checks) = (0, 0);
    while kills < KILLS_MAX && started.elapsed() < RUN_TIME_MAX {
        let first_seq = u64::try_from(kills).unwrap() * 10_000_000;
        let wait_for = if rng.gen_bool(0.1) {
            0
        } else {
            rng.gen_range(1..400)
        };
        for (partition, base, seq) in run_and_kill(dir.path(), first_seq, wait_for) {
            assert!(
                acked.insert((partition, base), seq).is_none(),
                "offset {base} of partition {partition} acknowledged twice"
            );
        }
        kills += 1;
        if kills % 3 == 0 || kills == KILLS_MAX {
            verify(dir.path(), &acked);
            checks += 1;
        }
    }
    verify(dir.path(), &acked);
    println!(
        "crash test: {kills} kills, {checks} checks, {} acknowledged batches all intact",
        acked.len()
    );
}

/// Runs one child until it has acknowledged `wait_for` appends, kills it, and returns every
/// acknowledgement it printed in full.
fn run_and_kill(dir: &Path, first_seq: u64, wait_for: usize) -> Vec<(u32, i64, u64)> {
    let child = Command::new(std::env::current_exe().unwrap())
        .env("STRAND_CRASH_CHILD_DIR", dir)
        .env("STRAND_CRASH_FIRST_SEQ", first_seq.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut acks = Vec::new();
    let mut line = Vec::new();
    while acks.len() < wait_for {
        line.clear();
        if stdout.read_until(b'\n', &mut line).unwrap() == 0 {
            panic!(
                "the child exited before it was killed (status {:?})",
                child.0.wait()
            );
        }
        acks.push(parse_ack(&line));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    loop {
        line.clear();
        // Only whole lines count: a line cut by the kill was never fully reported.
        if stdout.read_until(b'\n', &mut line).unwrap() == 0 || line.last() != Some(&b'\n') {
            return acks;
        }
        acks.push(parse_ack(&line));
    }
}

fn parse_ack(line: &[u8]) -> (u32, i64, u64) {
    let text = std::str::from_utf8(line).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(
        fields.first(),
        Some(&"ack"),
        "unexpected child output {text:?}"
    );
    (
        fields[1].parse().unwrap(),
        fields[2].parse().unwrap(),
        fields[3].parse().unwrap(),
    )
}

/// Opens the directory (recovering it), checks it against the acknowledgements, and stops.
fn verify(dir: &Path, acked: &BTreeMap<(u32, i64), u64>) {
    let engine = TestEngine::start(config(dir));
    let stored = engine.run(|router| async move {
        let mut stored = BTreeMap::new();
        for partition in 0..2 {
            match read_all(&router, TOPIC, partition, 0).await {
                Ok(batches) => stored.extend(
                    batches
                        .into_iter()
                        .map(|(base, bytes)| ((partition, base), bytes)),
                ),
                Err(strand_engine::ReadError::UnknownPartition { .. }) => {}
                Err(error) => panic!("reading partition {partition}: {error}"),
            }
        }
        stored
    });
    let mut next_offset = [0i64; 2];
    for ((partition, base), bytes) in &stored {
        let index = usize::try_from(*partition).unwrap();
        assert_eq!(
            *base, next_offset[index],
            "partition {partition} offsets are contiguous"
        );
        let header =
            strand_engine::batch::check_batch(bytes).expect("only valid batches are readable");
        next_offset[index] = header.last_offset() + 1;
        assert_eq!(
            as_sent(bytes),
            batch_for(seq_of(bytes)),
            "batch at {base} is one the child wrote, intact"
        );
    }
    for ((partition, base), seq) in acked {
        let bytes = stored
            .get(&(*partition, *base))
            .unwrap_or_else(|| panic!("acknowledged batch {seq} at {partition}/{base} lost"));
        assert_eq!(
            seq_of(bytes),
            *seq,
            "acknowledged batch at {partition}/{base} is the one acknowledged"
        );
    }
    engine.stop();
}
