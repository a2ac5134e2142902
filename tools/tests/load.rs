//! `strand load` against a live broker: a two-second run of each workload, whose JSON must
//! pass its own checks and agree with what the broker reports stored. Smoke runs only; the
//! figures themselves are measured by the benchmark runner, never asserted here.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;
use support::Broker;

/// Runs `strand load ARGS --json FILE` and returns its exit status and report.
fn load(broker: &Broker, dir: &Path, name: &str, args: &[&str]) -> (bool, Value) {
    let json = dir.join(format!("{name}.json"));
    let output = Command::new(env!("CARGO_BIN_EXE_strand"))
        .arg("--bootstrap")
        .arg(broker.bootstrap())
        .arg("load")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        json.exists(),
        "no report from {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("msg/s"), "no table: {stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (output.status.success(), report)
}

fn assert_passed(ok: bool, report: &Value) {
    let checks = report["checks"].as_array().unwrap();
    assert!(!checks.is_empty(), "nothing checked: {report:#}");
    for check in checks {
        assert_eq!(check["passed"], true, "failed check in {report:#}");
    }
    assert_eq!(report["errors"], 0, "{report:#}");
    assert!(ok, "exit status says failure: {report:#}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report:#}");
    assert!(report["messages_per_s"].as_f64().unwrap() > 0.0);
}

fn log_end_offsets(broker: &Broker, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "load-test-probe")
        .create()
        .unwrap();
    (0..partitions)
        .map(|partition| {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .unwrap();
            high - low
        })
        .sum()
}

#[test]
fn produce_counts_agree_with_the_log_and_consume_reads_them_back() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ok, report) = load(
        &broker,
        dir.path(),
        "produce",
        &[
            "produce",
            "--topic",
            "smoke",
            "--partitions",
            "3",
            "--duration",
            "2s",
            "--producers",
            "2",
            "--size",
            "512",
        ],
    );
    assert_passed(ok, &report);
    assert!(report["latency"]["produce"]["p99_ms"].as_f64().unwrap() > 0.0);
    // Every acknowledged message is in the log: the broker's own offsets say so. Messages
    // sent in the last moments may be acknowledged after the window, so the log holds at
    // least the measured count.
    let stored = log_end_offsets(&broker, "smoke", 3);
    let measured = i64::try_from(report["messages"].as_u64().unwrap()).unwrap();
    assert!(stored >= measured, "{stored} stored < {measured} measured");
    let detail = report["checks"][0]["detail"].as_str().unwrap().to_string();
    assert!(
        detail.ends_with(&format!("{stored} stored")),
        "the run's own count of offsets, {detail}, differs from the log's {stored}"
    );
    assert_eq!(report["parameters"]["partitions"], 3);
    assert_eq!(report["parameters"]["size"], 512);
    // The timeline counts every measured acknowledgement, second by second; how many seconds
    // it spans depends on how long the last acknowledgements took.
    let timeline = report["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 2, "{report:#}");
    let per_second: u64 = timeline.iter().map(|count| count.as_u64().unwrap()).sum();
    assert_eq!(
        per_second,
        report["messages"].as_u64().unwrap(),
        "{report:#}"
    );

    let (ok, report) = load(
        &broker,
        dir.path(),
        "consume",
        &[
            "consume",
            "--topic",
            "smoke",
            "--partitions",
            "3",
            "--consumers",
            "2",
        ],
    );
    assert_passed(ok, &report);
    assert_eq!(
        i64::try_from(report["messages"].as_u64().unwrap()).unwrap(),
        stored,
        "consume read every stored message once"
    );
}

#[test]
fn consumer_workloads_receive_every_message_once() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("e2e", vec!["e2e", "--rate", "2000"]),
        (
            "queue",
            vec![
                "queue",
                "--partitions",
                "4",
                "--consumers",
                "3",
                "--producers",
                "2",
            ],
        ),
        (
            "pubsub",
            vec!["pubsub", "--partitions", "2", "--groups", "3"],
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--duration", "2s"]);
        let (ok, report) = load(&broker, dir.path(), name, &args);
        assert_passed(ok, &report);
        assert!(
            report["latency"]["end_to_end"]["p50_ms"].as_f64().unwrap() > 0.0,
            "{report:#}"
        );
        let groups = if name == "pubsub" { 3 } else { 1 };
        let group_checks = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|check| check["name"].as_str().unwrap().ends_with("received once"))
            .count();
        assert_eq!(group_checks, groups, "{report:#}");
    }
}

#[test]
fn request_reply_answers_every_request() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ok, report) = load(
        &broker,
        dir.path(),
        "rr",
        &[
            "request-reply",
            "--duration",
            "2s",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--partitions",
            "2",
        ],
    );
    assert_passed(ok, &report);
    let round_trip = &report["latency"]["round_trip"];
    assert!(round_trip["count"].as_u64().unwrap() > 0, "{report:#}");
    assert!(
        round_trip["p50_ms"].as_f64().unwrap()
            >= report["latency"]["produce"]["p50_ms"].as_f64().unwrap() * 0.5,
        "a round trip includes the request's write: {report:#}"
    );
}

#[test]
fn bad_options_are_refused_with_a_message() {
    for (args, expected) in [
        (vec!["produce", "--size", "8"], "--size 8 is too small"),
        (vec!["produce", "--acks", "2"], "--acks \"2\""),
        (vec!["produce", "--compression", "brotli"], "--compression"),
        (vec!["produce", "--rate", "0"], "--rate must be a positive"),
        (
            vec!["e2e", "--acks", "0"],
            "--acks 0 is only for the produce",
        ),
        (vec!["produce", "--duration", "soon"], "not a duration"),
        (vec!["produce", "-X", "linger.ms"], "not KEY=VALUE"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_strand"))
            .args(["--bootstrap", "127.0.0.1:1", "load"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
