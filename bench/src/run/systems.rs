//! The brokers compared side by side, and the workloads each one is put through: the same
//! `strand load` command lines for every broker, in the same order.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Options;
use super::broker::{BrokerProcess, Memory};
use super::load::{self, Outcome};

/// One broker's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SystemRun {
    pub name: String,
    /// Workload name and outcome, in the order they ran.
    pub workloads: Vec<(String, Outcome)>,
    /// The broker's memory after the last workload.
    pub memory: Memory,
    pub ready_ms: f64,
    pub error: Option<String>,
}

impl SystemRun {
    pub fn get(&self, workload: &str) -> Option<&Outcome> {
        self.workloads
            .iter()
            .find(|(name, _)| name == workload)
            .map(|(_, outcome)| outcome)
    }
}

/// The workloads, in the order they run and appear in RESULTS.md.
pub const WORKLOADS: [(&str, &str); 7] = [
    ("produce", "produce, peak (4 partitions, 2 producers)"),
    ("produce-half", "produce at half the peak rate"),
    (
        "e2e",
        "end-to-end, produce + consume at half the peak rate (max 50k msg/s)",
    ),
    (
        "request-reply",
        "request-reply, 1 requester, 1 responder, 1 in flight",
    ),
    ("queue", "queue, 6 partitions, 3 consumers in one group"),
    ("pubsub", "pubsub, 4 partitions, 2 groups each reading all"),
    ("consume", "consume a prepared topic from the start"),
];

/// Producer settings shared by every throughput workload: batches up to 1 MiB, 1 ms linger.
const PRODUCER: [&str; 4] = ["--linger-ms", "1", "--batch-bytes", "1048576"];

/// `produce` with 1 KiB messages for the run's duration, plus `extra`.
pub fn produce_args(options: &Options, extra: &[&str]) -> Vec<String> {
    workload_args(options, "produce", extra)
}

fn workload_args(options: &Options, workload: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![workload.into(), "--size".into(), "1024".into()];
    if workload != "consume" {
        args.extend([
            "--duration".to_string(),
            format!("{}s", options.seconds),
            "--warmup".to_string(),
            format!("{}s", options.warmup),
        ]);
    }
    if workload != "request-reply" {
        args.extend(PRODUCER.iter().map(ToString::to_string));
    }
    args.extend(extra.iter().map(ToString::to_string));
    args
}

/// How long one `strand load` may take before it is killed.
pub fn timeout(options: &Options) -> Duration {
    Duration::from_secs(options.seconds * 3 + options.warmup + 120)
}

pub fn run_all(options: &Options, strand: &Path, tansu: Option<&Path>) -> Vec<SystemRun> {
    let mut runs = Vec::new();
    for (name, fsync) in [("strand", true), ("strand-no-fsync", false)] {
        eprintln!("== {name}");
        let data = options.work.join(name);
        let _ = std::fs::remove_dir_all(&data);
        runs.push(run_system(
            options,
            strand,
            name,
            BrokerProcess::strand(strand, &data, fsync),
        ));
        let _ = std::fs::remove_dir_all(&data);
    }
    if let Some(tansu) = tansu {
        let sqlite = options.work.join("tansu.db");
        for (name, storage) in [
            ("tansu-sqlite", format!("sqlite://{}", sqlite.display())),
            ("tansu-memory", "memory://tansu/".to_string()),
        ] {
            eprintln!("== {name}");
            let _ = std::fs::remove_file(&sqlite);
            runs.push(run_system(
                options,
                strand,
                name,
                BrokerProcess::tansu(tansu, &storage),
            ));
            let _ = std::fs::remove_file(&sqlite);
        }
    }
    runs
}

/// The single node's durable produce alone (what the cluster's is compared with).
pub fn run_durable_produce(options: &Options, strand: &Path) -> SystemRun {
    let name = "strand";
    eprintln!("== {name} (produce only)");
    let data = options.work.join(name);
    let _ = std::fs::remove_dir_all(&data);
    let mut run = SystemRun {
        name: name.to_string(),
        ..SystemRun::default()
    };
    match BrokerProcess::strand(strand, &data, true) {
        Ok(broker) => {
            run.ready_ms = broker.ready_after.as_secs_f64() * 1000.0;
            let json = options.out.join(format!("load/{name}-produce.json"));
            let args = produce_args(options, &["--partitions", "4", "--producers", "2"]);
            let outcome = load::run(strand, &broker.bootstrap(), &args, &json, timeout(options));
            run.workloads.push(("produce".to_string(), outcome));
            run.memory = broker.memory();
            broker.stop();
        }
        Err(error) => run.error = Some(format!("{error:#}")),
    }
    let _ = std::fs::remove_dir_all(&data);
    run
}

fn run_system(
    options: &Options,
    strand: &Path,
    name: &str,
    broker: anyhow::Result<BrokerProcess>,
) -> SystemRun {
    let mut run = SystemRun {
        name: name.to_string(),
        ..SystemRun::default()
    };
    let broker = match broker {
        Ok(broker) => broker,
        Err(error) => {
            eprintln!("   -> {error:#}");
            run.error = Some(format!("{error:#}"));
            return run;
        }
    };
    run.ready_ms = broker.ready_after.as_secs_f64() * 1000.0;
    let bootstrap = broker.bootstrap();
    let measure = |workload: &str, args: Vec<String>| {
        let json = options.out.join(format!("load/{name}-{workload}.json"));
        (
            workload.to_string(),
            load::run(strand, &bootstrap, &args, &json, timeout(options)),
        )
    };
    run.workloads.push(measure(
        "produce",
        produce_args(options, &["--partitions", "4", "--producers", "2"]),
    ));
    let peak = run
        .get("produce")
        .and_then(Outcome::messages_per_s)
        .unwrap_or(0.0);
    let half = format!("{:.0}", (peak / 2.0).max(100.0));
    let moderate = format!("{:.0}", (peak / 2.0).clamp(100.0, 50_000.0));
    let topic = format!("bench-consume-{name}");
    // The consume workload reads what the broker can take in about the run's duration.
    #[allow(clippy::cast_precision_loss)]
    let prepared = format!(
        "{:.0}",
        (peak * options.seconds as f64).clamp(10_000.0, 1_000_000.0)
    );
    let plan: [(&str, Vec<&str>); 6] = [
        (
            "produce-half",
            vec![
                "produce",
                "--partitions",
                "4",
                "--producers",
                "2",
                "--rate",
                &half,
            ],
        ),
        ("e2e", vec!["e2e", "--partitions", "4", "--rate", &moderate]),
        ("request-reply", vec!["request-reply"]),
        (
            "queue",
            vec!["queue", "--partitions", "6", "--consumers", "3"],
        ),
        (
            "pubsub",
            vec!["pubsub", "--partitions", "4", "--groups", "2"],
        ),
        (
            "consume",
            vec![
                "consume",
                "--partitions",
                "4",
                "--topic",
                &topic,
                "--messages",
                &prepared,
            ],
        ),
    ];
    for (workload, words) in plan {
        run.workloads.push(measure(
            workload,
            workload_args(options, words[0], &words[1..]),
        ));
    }
    run.memory = broker.memory();
    broker.stop();
    run
}
