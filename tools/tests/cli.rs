//! The client commands (`strand topic`, `group`, `produce`, `consume`) against a real
//! broker: what they print and their exit codes.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use support::Broker;

fn strand(broker: &Broker, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strand"))
        .arg("--bootstrap")
        .arg(broker.bootstrap())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn topics_messages_and_groups_from_the_command_line() {
    let broker = Broker::start();
    let created = strand(
        &broker,
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
        None,
    );
    assert!(created.status.success(), "{}", stdout(&created));
    let again = strand(&broker, &["topic", "create", "orders"], None);
    assert_eq!(again.status.code(), Some(1));
    assert!(stdout(&again).contains("TopicAlreadyExists"));

    let listed = stdout(&strand(&broker, &["topic", "list"], None));
    assert!(
        listed
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["orders", "3", "1"]),
        "{listed}"
    );

    let produced = strand(
        &broker,
        &[
            "produce",
            "orders",
            "-k",
            ":",
            "-H",
            "source=cli",
            "-p",
            "1",
        ],
        Some("a:first\nb:second\nthird\n"),
    );
    assert!(produced.status.success());
    assert_eq!(
        stdout(&produced).matches("Produced to partition 1").count(),
        3
    );

    let consumed = strand(
        &broker,
        &["consume", "orders", "-b", "-e", "-f", "%p %o %k=%v %h\\n"],
        None,
    );
    assert_eq!(
        stdout(&consumed),
        "1 0 a=first source=cli\n1 1 b=second source=cli\n1 2 =third source=cli\n"
    );

    let changed = strand(
        &broker,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "segment.ms=60000",
            "--delete",
            "retention.ms",
        ],
        None,
    );
    assert!(changed.status.success(), "{}", stdout(&changed));
    let refused = strand(
        &broker,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.bytes=lots",
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains("InvalidConfig"),
        "{}",
        stdout(&refused)
    );
    let described = stdout(&strand(&broker, &["topic", "describe", "orders"], None));
    assert!(
        described.contains("segment.ms") && described.contains("60000"),
        "{described}"
    );
    let partition_1 = described
        .lines()
        .find(|line| line.starts_with("1 "))
        .unwrap();
    assert!(partition_1.trim_end().ends_with('3'), "{partition_1}");

    groups_and_lag(&broker);

    let deleted = strand(&broker, &["topic", "delete", "orders", "missing"], None);
    assert_eq!(deleted.status.code(), Some(1));
    assert!(stdout(&deleted).contains("UnknownTopicOrPartition"));
}

/// A group consumes two of partition 1's three messages: lag 1.
fn groups_and_lag(broker: &Broker) {
    let grouped = strand(
        broker,
        &["consume", "orders", "-g", "cli-group", "-b", "-n", "2"],
        None,
    );
    assert_eq!(stdout(&grouped).lines().count(), 2);
    let groups = stdout(&strand(broker, &["group", "list"], None));
    assert!(groups.contains("cli-group"), "{groups}");
    let lag = stdout(&strand(broker, &["group", "describe", "cli-group"], None));
    let row = lag.lines().find(|line| line.starts_with("orders")).unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[..5], ["orders", "1", "2", "3", "1"], "{lag}");
}

/// A second broker may neither share a running broker's port (SO_REUSEPORT would let the
/// kernel split clients between them) nor its data directory (both would write the same
/// segment files). Both refusals name the problem, and the first broker keeps serving.
#[test]
fn a_second_broker_is_refused_the_port_and_the_data_directory() {
    let broker = Broker::start();
    let other_dir = tempfile::tempdir().unwrap();
    let same_port = second_serve(&broker.bootstrap(), other_dir.path());
    assert_eq!(same_port.status.code(), Some(2), "{same_port:?}");
    let said = String::from_utf8_lossy(&same_port.stderr);
    assert!(said.contains("already in use"), "{said}");

    let other_port = format!("127.0.0.1:{}", support::free_port());
    let same_dir = second_serve(&other_port, broker.data_dir());
    assert_eq!(same_dir.status.code(), Some(2), "{same_dir:?}");
    let said = String::from_utf8_lossy(&same_dir.stderr);
    assert!(said.contains("in use by another process"), "{said}");

    let listed = strand(&broker, &["topic", "list"], None);
    assert!(listed.status.success(), "{listed:?}");
    broker.stop();
}

/// `strand serve` that is expected to refuse to start: killed if it is still running
/// after 30 s, so a failure to refuse cannot hang the test.
fn second_serve(listen: &str, data_dir: &std::path::Path) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_strand"))
        .args([
            "serve",
            "--cores",
            "1",
            "--metrics",
            "none",
            "--listen",
            listen,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .is_err()
        {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = done_tx.send(());
    watchdog.join().unwrap();
    output
}
