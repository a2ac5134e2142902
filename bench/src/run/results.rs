//! RESULTS.md: the targets with their verdicts, the machine's limits, every workload on every
//! broker with ratios, the scale runs, and the plots.

use std::fmt::Write as _;

use super::cluster::ClusterRun;
use super::load::Outcome;
use super::systems::{SystemRun, WORKLOADS};
use super::{Results, ScalePoint};

const MIB: f64 = 1024.0 * 1024.0;

fn find<'a>(results: &'a Results, name: &str) -> Option<&'a SystemRun> {
    results.systems.iter().find(|system| system.name == name)
}

fn mb(results: &Results, system: &str, workload: &str) -> Option<f64> {
    find(results, system)?.get(workload)?.mb_per_s()
}

fn latency(results: &Results, system: &str, workload: &str, kind: &str) -> Option<f64> {
    find(results, system)?
        .get(workload)?
        .latency(kind, "p99_ms")
}

fn show(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |value| format!("{value:.digits$}"))
}

fn ratio(top: Option<f64>, bottom: Option<f64>) -> Option<f64> {
    match (top, bottom) {
        (Some(top), Some(bottom)) if bottom > 0.0 => Some(top / bottom),
        _ => None,
    }
}

/// A target row: what was asked, what was measured, and whether it holds.
fn target(out: &mut String, asked: &str, measured: String, met: Option<bool>) {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    };
    let _ = writeln!(out, "| {asked} | {measured} | {verdict} |");
}

pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Strand benchmark results\n");
    let _ = writeln!(
        out,
        "Made by `cargo run --release -p strand-bench --bin bench-run` (here `{}`) at commit {} \
         on {} (Unix time {}). Every figure below comes from this one run; ratios compare \
         figures of the same run. Messages are 1 KiB; durable means acks=all \
         with fdatasync before the acknowledgement. Load comes from `strand load` (librdkafka) \
         on the same machine, so the broker and its clients share the cores.\n",
        results.command, results.commit, results.machine, results.started_unix_s
    );
    // `--only-cluster`: the single node's produce and the cluster, nothing else to show.
    let only_cluster = results.disk.write_1mib_fdatasync_bytes_per_s == 0.0
        && results
            .systems
            .iter()
            .all(|system| system.workloads.len() <= 1);
    if only_cluster {
        cluster(&mut out, results);
        commands(&mut out, results);
        return out;
    }
    targets(&mut out, results);
    limits(&mut out, results);
    workloads(&mut out, results);
    super::profile::render(&mut out, &results.profiles);
    scale(&mut out, results);
    cluster(&mut out, results);
    let _ = writeln!(out, "## Plots\n");
    let _ = writeln!(out, "![throughput](throughput.svg)\n");
    let _ = writeln!(out, "![produce latency](latency-produce.svg)\n");
    let _ = writeln!(out, "![request-reply latency](latency-request-reply.svg)\n");
    commands(&mut out, results);
    out
}

fn targets(out: &mut String, results: &Results) {
    let durable = mb(results, "strand", "produce");
    let disk_synced = results.disk.write_1mib_fdatasync_bytes_per_s / 1e6;
    let sqlite = mb(results, "tansu-sqlite", "produce");
    let memory = mb(results, "tansu-memory", "produce");
    let half_p99 = latency(results, "strand", "produce-half", "produce");
    let rr_p99 = latency(results, "strand", "request-reply", "round_trip");
    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| target | measured | verdict |\n|---|---|---|");
    target(
        out,
        "durable produce ≥ 1 GB/s",
        format!("{} MB/s", show(durable, 1)),
        durable.map(|value| value >= 1000.0),
    );
    let of_disk = ratio(durable, Some(disk_synced).filter(|value| *value > 0.0));
    target(
        out,
        "≥ 50% of raw fdatasync'd 1 MiB sequential writes",
        format!("{} × ({disk_synced:.1} MB/s raw)", show(of_disk, 3)),
        of_disk.map(|value| value >= 0.5),
    );
    let of_sqlite = ratio(durable, sqlite);
    target(
        out,
        "≥ 10× Tansu on sqlite",
        format!("{} ×", show(of_sqlite, 1)),
        of_sqlite.map(|value| value >= 10.0),
    );
    let of_memory = ratio(durable, memory);
    target(
        out,
        "above Tansu in memory",
        format!("{} ×", show(of_memory, 2)),
        of_memory.map(|value| value > 1.0),
    );
    target(
        out,
        "p99 produce latency at half the peak rate < 2 ms",
        format!("{} ms", show(half_p99, 3)),
        half_p99.map(|value| value < 2.0),
    );
    target(
        out,
        "request-reply p99 round trip, durable, < 1 ms",
        format!("{} ms", show(rr_p99, 3)),
        rr_p99.map(|value| value < 1.0),
    );
    let one = point(&results.scale_partitions, 1).and_then(|p| p.outcome.mb_per_s());
    let many = point(&results.scale_partitions, 10_000);
    let kept = ratio(many.and_then(|p| p.outcome.mb_per_s()), one);
    target(
        out,
        "10,000 partitions ≥ 70% of 1 partition's throughput",
        format!("{} ×", show(kept, 2)),
        kept.map(|value| value >= 0.7),
    );
    #[allow(clippy::cast_precision_loss)]
    let many_memory = many
        .filter(|p| p.memory.peak_rss_bytes > 0)
        .map(|p| p.memory.peak_rss_bytes as f64 / MIB);
    target(
        out,
        "10,000 partitions: broker memory < 2 GiB",
        format!("{} MiB peak resident", show(many_memory, 0)),
        many_memory.map(|value| value < 2048.0),
    );
    let idle = results.idle.as_ref().filter(|idle| idle.error.is_none());
    #[allow(clippy::cast_precision_loss)]
    let idle_rss = idle.map(|idle| idle.rss_bytes as f64 / MIB);
    target(
        out,
        "idle broker with 1,000 partitions < 64 MiB resident",
        format!("{} MiB", show(idle_rss, 1)),
        idle_rss.map(|value| value < 64.0),
    );
    let ready = idle.map(|idle| idle.ready_ms);
    target(
        out,
        "… and starts in < 1 s",
        format!("{} ms to answer ApiVersions", show(ready, 0)),
        ready.map(|value| value < 1000.0),
    );
    let failover = results.cluster.as_ref().and_then(ClusterRun::failover);
    let kills = results
        .cluster
        .as_ref()
        .map_or(0, |run| run.failover_ms.len());
    target(
        out,
        "failover (head SIGKILLed → first acknowledged produce), median < 1 s",
        failover.map_or_else(
            || "n/a".to_string(),
            |(median, max)| format!("median {median:.0} ms, max {max:.0} ms over {kills} kills"),
        ),
        failover.map(|(median, _)| median < 1000.0),
    );
    let _ = writeln!(out);
}

fn cluster(out: &mut String, results: &Results) {
    let Some(run) = &results.cluster else {
        return;
    };
    let _ = writeln!(
        out,
        "## Three-node cluster on this machine
"
    );
    let replicated = run.produce.as_ref().and_then(Outcome::mb_per_s);
    let single = mb(results, "strand", "produce");
    let _ = writeln!(
        out,
        "Three `strand serve --peers` processes of one shard each on this machine's two \
         cores, beside the load generator; topics of chains of three, produce with acks=all \
         answered once every member holds the batch durably.\n"
    );
    let _ = writeln!(
        out,
        "| figure | value |\n|---|---|\n| replicated durable produce | {} MB/s |\n| \
         single-node durable produce (same run) | {} MB/s |\n| replicated / single node | {} × |",
        show(replicated, 1),
        show(single, 1),
        show(ratio(replicated, single), 3)
    );
    if let Some((median, max)) = run.failover() {
        let _ = writeln!(
            out,
            "| failover over {} head kills | median {median:.0} ms, max {max:.0} ms |",
            run.failover_ms.len()
        );
    }
    if let Some(error) = &run.error {
        let _ = writeln!(out, "\nFailed: {error}");
    }
    let _ = writeln!(out);
}

fn point(points: &[ScalePoint], count: u32) -> Option<&ScalePoint> {
    points
        .iter()
        .find(|point| point.count == count && point.outcome.report.is_some())
}

fn limits(out: &mut String, results: &Results) {
    let disk = &results.disk;
    let _ = writeln!(out, "## The machine's limits\n");
    let _ = writeln!(out, "| limit | figure |\n|---|---|");
    let _ = writeln!(
        out,
        "| disk: 1 MiB sequential O_DIRECT writes ({}) | {:.1} MB/s |",
        disk.fio_version,
        disk.write_1mib_bytes_per_s / 1e6
    );
    let _ = writeln!(
        out,
        "| disk: the same, fdatasync after each | {:.1} MB/s |",
        disk.write_1mib_fdatasync_bytes_per_s / 1e6
    );
    let _ = writeln!(
        out,
        "| disk: 4 KiB write + fdatasync | {:.0}/s, p50 {:.3} ms, p99 {:.3} ms |",
        disk.write_4kib_fdatasync_per_s,
        disk.write_4kib_fdatasync_p50_ms,
        disk.write_4kib_fdatasync_p99_ms
    );
    let _ = writeln!(
        out,
        "| loopback TCP, one stream of 1 MiB writes | {:.1} MB/s |\n",
        results.loopback_bytes_per_s / 1e6
    );
}

fn cell(system: &SystemRun, workload: &str) -> String {
    let Some(outcome) = system.get(workload) else {
        return system
            .error
            .as_ref()
            .map_or_else(|| "not run".to_string(), |error| format!("failed: {error}"));
    };
    let Some(report) = &outcome.report else {
        return format!("failed: {}", outcome.error.clone().unwrap_or_default());
    };
    let kind = match workload {
        "request-reply" => "round_trip",
        "e2e" | "queue" | "pubsub" => "end_to_end",
        _ => "produce",
    };
    let p99 = outcome
        .latency(kind, "p99_ms")
        .map_or(String::new(), |p99| format!(", p99 {p99:.2} ms"));
    let mut text = format!(
        "{:.0} msg/s, {:.1} MB/s{p99}",
        report["messages_per_s"].as_f64().unwrap_or(0.0),
        report["mb_per_s"].as_f64().unwrap_or(0.0)
    );
    let failed: Vec<String> = report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|check| check["passed"] == false)
                .map(|check| {
                    let detail = check["detail"].as_str().unwrap_or_default();
                    let short: String = detail.chars().take(70).collect();
                    format!("{}: {short}", check["name"].as_str().unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    if !failed.is_empty() {
        let _ = write!(text, " (**failed check** {})", failed.join("; "));
    } else if let Some(error) = &outcome.error {
        let _ = write!(text, " ({error})");
    }
    text
}

fn workloads(out: &mut String, results: &Results) {
    let _ = writeln!(out, "## Workloads\n");
    let _ = writeln!(
        out,
        "Each cell: messages a second, MB/s, and the p99 latency that matters for the workload \
         (produce acknowledgement; end-to-end delivery; request-reply round trip).\n"
    );
    let mut header = "| workload |".to_string();
    let mut rule = "|---|".to_string();
    for system in &results.systems {
        let _ = write!(header, " {} |", system.name);
        rule.push_str("---|");
    }
    header.push_str(" strand / tansu-sqlite | strand / tansu-memory |");
    rule.push_str("---|---|");
    let _ = writeln!(out, "{header}\n{rule}");
    for (workload, description) in WORKLOADS {
        let mut row = format!("| {description} |");
        for system in &results.systems {
            let _ = write!(row, " {} |", cell(system, workload));
        }
        let strand = find(results, "strand").and_then(|s| s.get(workload)?.messages_per_s());
        for other in ["tansu-sqlite", "tansu-memory"] {
            let theirs = find(results, other).and_then(|s| s.get(workload)?.messages_per_s());
            let _ = write!(row, " {} |", show(ratio(strand, theirs), 2));
        }
        let _ = writeln!(out, "{row}");
    }
    let mut row = "| broker resident memory after the workloads |".to_string();
    for system in &results.systems {
        #[allow(clippy::cast_precision_loss)]
        let _ = write!(
            row,
            " {:.0} MiB now, {:.0} MiB peak |",
            system.memory.rss_bytes as f64 / MIB,
            system.memory.peak_rss_bytes as f64 / MIB
        );
    }
    let _ = writeln!(out, "{row} | |\n");
}

fn scale(out: &mut String, results: &Results) {
    for (title, points) in [
        ("partitions", &results.scale_partitions),
        (
            "connections (one librdkafka producer each)",
            &results.scale_connections,
        ),
    ] {
        if points.is_empty() {
            continue;
        }
        let base = points.first().and_then(|p| p.outcome.mb_per_s());
        let _ = writeln!(out, "## Strand durable produce by {title}\n");
        let _ = writeln!(
            out,
            "| {} | MB/s | × the first row | p99 ms | broker peak resident MiB | notes |\n|---|---|---|---|---|---|",
            title.split(' ').next().unwrap_or(title)
        );
        for point in points.iter() {
            let mb_per_s = point.outcome.mb_per_s();
            #[allow(clippy::cast_precision_loss)]
            let peak = point.memory.peak_rss_bytes as f64 / MIB;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {peak:.0} | {} |",
                point.count,
                show(mb_per_s, 1),
                show(ratio(mb_per_s, base), 2),
                show(point.outcome.latency("produce", "p99_ms"), 1),
                point.outcome.error.clone().unwrap_or_default()
            );
        }
        let _ = writeln!(out);
    }
    if let Some(idle) = &results.idle {
        let _ = writeln!(out, "## Idle broker over 1,000 partitions\n");
        match &idle.error {
            Some(error) => {
                let _ = writeln!(out, "Failed: {error}\n");
            }
            None => {
                #[allow(clippy::cast_precision_loss)]
                let _ = writeln!(
                    out,
                    "Restarted over 1,000 partitions, it answered ApiVersions {:.0} ms after it \
                     was spawned, and 5 s later was {:.1} MiB resident.\n",
                    idle.ready_ms,
                    idle.rss_bytes as f64 / MIB
                );
            }
        }
    }
}

fn commands(out: &mut String, results: &Results) {
    let _ = writeln!(out, "## Commands\n");
    let _ = writeln!(
        out,
        "Each workload ran as `strand --bootstrap BROKER load …` with these arguments (the \
         reports are in `load/`):\n"
    );
    if let Some(system) = results.systems.first() {
        for (workload, outcome) in &system.workloads {
            let _ = writeln!(out, "- {workload}: `{}`", outcome.args.join(" "));
        }
    }
    if let Some(produce) = results
        .cluster
        .as_ref()
        .and_then(|run| run.produce.as_ref())
    {
        let _ = writeln!(
            out,
            "- cluster produce (bootstrap: all three nodes): `{}`",
            produce.args.join(" ")
        );
    }
    let _ = writeln!(out);
}
