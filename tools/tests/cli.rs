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
