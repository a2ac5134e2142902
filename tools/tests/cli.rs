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

/// The committed offset of `group` on partition 0 of `topic`, as `group describe` shows it.
fn committed(broker: &Broker, group: &str, topic: &str) -> String {
    let shown = stdout(&strand(broker, &["group", "describe", group], None));
    let row = shown
        .lines()
        .find(|line| line.starts_with(topic))
        .unwrap_or_else(|| panic!("{shown}"));
    row.split_whitespace().nth(2).unwrap().to_string()
}

#[test]
fn group_offsets_are_reset_and_groups_and_records_deleted_from_the_command_line() {
    let broker = Broker::start();
    let created = strand(&broker, &["topic", "create", "reset", "-p", "1"], None);
    assert!(created.status.success());
    let lines: String = (0..10).map(|i| format!("v{i}\n")).collect();
    assert!(
        strand(&broker, &["produce", "reset"], Some(&lines))
            .status
            .success()
    );
    let consumed = strand(
        &broker,
        &["consume", "reset", "-g", "rg", "-b", "-n", "4"],
        None,
    );
    assert_eq!(stdout(&consumed).lines().count(), 4);
    assert_eq!(committed(&broker, "rg", "reset"), "4");
    // A dry run shows the plan and changes nothing.
    let plan = strand(
        &broker,
        &[
            "group",
            "reset-offsets",
            "rg",
            "--topic",
            "reset",
            "--to-earliest",
        ],
        None,
    );
    assert!(plan.status.success(), "{}", stdout(&plan));
    assert!(stdout(&plan).contains("dry run"), "{}", stdout(&plan));
    assert_eq!(committed(&broker, "rg", "reset"), "4");
    for (args, expected) in [
        (vec!["--to-offset", "7"], "7"),
        (vec!["--shift-by", "-2"], "5"),
        (vec!["--to-latest"], "10"),
        (vec!["--to-datetime", "1970-01-01T00:00:00"], "0"),
        (vec!["--to-offset", "99"], "10"),
    ] {
        let mut command = vec![
            "group",
            "reset-offsets",
            "rg",
            "--topic",
            "reset:0",
            "--execute",
        ];
        command.extend(&args);
        let reset = strand(&broker, &command, None);
        assert!(reset.status.success(), "{args:?}: {}", stdout(&reset));
        assert_eq!(committed(&broker, "rg", "reset"), expected, "{args:?}");
    }
    let deleted = strand(&broker, &["group", "delete", "rg"], None);
    assert!(deleted.status.success(), "{}", stdout(&deleted));
    let gone = strand(&broker, &["group", "describe", "rg"], None);
    assert_eq!(gone.status.code(), Some(1));
    let again = strand(&broker, &["group", "delete", "rg"], None);
    assert!(
        stdout(&again).contains("GroupIdNotFound"),
        "{}",
        stdout(&again)
    );
    // Partitions are added; records below an offset deleted.
    let grown = strand(
        &broker,
        &["topic", "add-partitions", "reset", "--num", "2"],
        None,
    );
    assert!(grown.status.success(), "{}", stdout(&grown));
    let listed = stdout(&strand(&broker, &["topic", "list"], None));
    assert!(
        listed
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["reset", "3", "1"]),
        "{listed}"
    );
    let trimmed = strand(
        &broker,
        &["records", "delete", "reset:0", "--before", "3"],
        None,
    );
    assert!(trimmed.status.success(), "{}", stdout(&trimmed));
    let row = stdout(&trimmed);
    assert!(
        row.lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["reset", "0", "3", "OK"]),
        "{row}"
    );
    broker.stop();
}

#[test]
fn broker_topic_defaults_come_from_the_config_file_with_kafkas_broker_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strand.toml");
    std::fs::write(
        &config,
        "[topic_defaults]\n\"log.retention.hours\" = 2\n\"log.cleanup.policy\" = \"compact\"\n\"segment.bytes\" = 1048576\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start_with(
        &data,
        &["--metrics", "none", "--config", config.to_str().unwrap()],
    );
    assert!(
        strand(&broker, &["topic", "create", "defaults"], None)
            .status
            .success()
    );
    let described = stdout(&strand(&broker, &["topic", "describe", "defaults"], None));
    for (key, value) in [
        ("retention.ms", "7200000"),
        ("cleanup.policy", "compact"),
        ("segment.bytes", "1048576"),
    ] {
        assert!(
            described
                .lines()
                .any(|line| line.contains(key) && line.contains(value)),
            "{key}={value}: {described}"
        );
    }
    broker.stop();
    // An unknown key is refused, naming it.
    std::fs::write(
        &config,
        "[topic_defaults]\n\"log.retention.fortnights\" = 2\n",
    )
    .unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_strand"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "none",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("log.retention.fortnights"), "{error}");
}
