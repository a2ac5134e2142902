//! Where the time goes in the workloads behind the throughput and latency targets (peak
//! produce, produce at half the peak rate, request-reply). Each is run a second time against
//! a fresh durable broker, so no measured figure is ever taken under a profiler, and over
//! the measured window this records:
//! - the CPU the broker's shards and its other threads used, and the rest of the machine
//!   (the load generator, mostly), from /proc;
//! - the broker's own view of its produce requests and group commits, from its /metrics;
//! - the broker's hottest functions, from `perf record` where perf is installed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Options;
use super::broker::{BrokerProcess, which};
use super::load;
use super::systems::{SystemRun, timeout};

/// The workloads profiled, by their names in [`super::systems::WORKLOADS`].
pub const PROFILED: [&str; 3] = ["produce", "produce-half", "request-reply"];

/// Functions listed per profile.
const HOTTEST_MAX: usize = 10;

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// One workload's profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    pub workload: String,
    pub args: Vec<String>,
    /// The window the figures cover.
    pub seconds: f64,
    pub cores: usize,
    /// Cores used on average over the window: broker shards, the broker's other threads
    /// (io_uring workers that run blocking writes and fdatasync, the controller), and every
    /// other process on the machine.
    pub broker_shards_cores: f64,
    pub broker_other_cores: f64,
    pub others_cores: f64,
    pub broker: BrokerTimings,
    /// The broker's hottest functions: name and share of its samples, in percent.
    pub hottest: Vec<(String, f64)>,
    /// Why part of the profile is missing.
    pub notes: Vec<String>,
}

/// Means over the window, from the broker's counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrokerTimings {
    pub produce_requests: f64,
    pub produce_mean_ms: f64,
    pub commits: f64,
    pub commit_bytes_mean: f64,
    pub commit_write_ms: f64,
    pub commit_sync_ms: f64,
}

/// Profiles each of [`PROFILED`] with the arguments it was measured with in `measured`.
pub fn run_all(options: &Options, strand: &Path, measured: Option<&SystemRun>) -> Vec<Profile> {
    let Some(measured) = measured else {
        return Vec::new();
    };
    PROFILED
        .iter()
        .filter_map(|workload| {
            let outcome = measured.get(workload)?;
            eprintln!("== profile: {workload}");
            Some(profile(options, strand, workload, &outcome.args))
        })
        .collect()
}

fn profile(options: &Options, strand: &Path, workload: &str, args: &[String]) -> Profile {
    let mut profile = Profile {
        workload: workload.to_string(),
        args: args.to_vec(),
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        ..Profile::default()
    };
    let data = options.work.join(format!("profile-{workload}"));
    let _ = std::fs::remove_dir_all(&data);
    match BrokerProcess::strand_with_metrics(strand, &data) {
        Ok((broker, metrics_port)) => {
            measure(options, strand, &broker, metrics_port, &mut profile);
            broker.stop();
        }
        Err(error) => profile
            .notes
            .push(format!("the broker did not start: {error:#}")),
    }
    let _ = std::fs::remove_dir_all(&data);
    profile
}

fn measure(
    options: &Options,
    strand: &Path,
    broker: &BrokerProcess,
    metrics_port: u16,
    profile: &mut Profile,
) {
    let Some(pid) = broker.pid() else {
        return;
    };
    let json = options
        .work
        .join(format!("profile-{}.json", profile.workload));
    let window = Duration::from_secs(options.seconds.saturating_sub(2).max(1));
    let perf_data = options.work.join(format!("perf-{}.data", profile.workload));
    std::thread::scope(|scope| {
        let args = profile.args.clone();
        let bootstrap = broker.bootstrap();
        let load =
            scope.spawn(move || load::run(strand, &bootstrap, &args, &json, timeout(options)));
        // The window starts a second into the measured part, after the warmup.
        std::thread::sleep(Duration::from_secs(options.warmup + 1));
        let cpu_before = CpuTimes::read(pid);
        let counters_before = scrape(metrics_port);
        let started = Instant::now();
        let perf = record(pid, window, &perf_data);
        if let Some(left) = window.checked_sub(started.elapsed()) {
            std::thread::sleep(left);
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu_after = CpuTimes::read(pid);
        let counters_after = scrape(metrics_port);
        profile.seconds = seconds;
        match (cpu_before, cpu_after) {
            (Some(before), Some(after)) => {
                let cores = |ticks: u64| ticks as f64 / TICKS_PER_S / seconds;
                let (shards, other, others) = after.used_since(&before);
                profile.broker_shards_cores = cores(shards);
                profile.broker_other_cores = cores(other);
                profile.others_cores = cores(others);
            }
            _ => profile.notes.push("could not read /proc CPU times".into()),
        }
        match (counters_before, counters_after) {
            (Ok(before), Ok(after)) => profile.broker = timings(&before, &after),
            (Err(error), _) | (_, Err(error)) => {
                profile
                    .notes
                    .push(format!("reading the broker's metrics: {error:#}"));
            }
        }
        match perf.and_then(|()| hottest(&perf_data)) {
            Ok(hottest) => profile.hottest = hottest,
            Err(error) => profile.notes.push(format!("perf: {error:#}")),
        }
        let outcome = load.join();
        if let Ok(outcome) = outcome
            && let Some(error) = outcome.error
        {
            profile.notes.push(format!("the load run: {error}"));
        }
    });
    let _ = std::fs::remove_file(&perf_data);
}

/// CPU ticks used so far: by the broker process, by its shard threads, by the machine.
struct CpuTimes {
    process: u64,
    shards: u64,
    machine: u64,
}

impl CpuTimes {
    fn read(pid: u32) -> Option<CpuTimes> {
        let process = ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
        let mut shards = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
        {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue; // the thread ended
            };
            if comm(&stat).is_some_and(|name| name.starts_with("shard-")) {
                shards += ticks(&stat).unwrap_or(0);
            }
        }
        let machine = machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)?;
        Some(CpuTimes {
            process,
            shards,
            machine,
        })
    }

    /// Ticks used since `before` by the broker's shards, by its other threads, and by every
    /// other process.
    fn used_since(&self, before: &CpuTimes) -> (u64, u64, u64) {
        let process = self.process.saturating_sub(before.process);
        let shards = self.shards.saturating_sub(before.shards);
        let machine = self.machine.saturating_sub(before.machine);
        (
            shards,
            process.saturating_sub(shards),
            machine.saturating_sub(process),
        )
    }
}

/// The thread name in a /proc stat line: `PID (NAME) STATE ...`.
fn comm(stat: &str) -> Option<&str> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    stat.get(open + 1..close)
}

/// utime + stime of a /proc stat line (fields 14 and 15, counted after the name).
fn ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0, so utime (14) is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy ticks of all CPUs from /proc/stat's `cpu` line: everything but idle and iowait.
fn machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4)?;
    Some(total - idle)
}

/// The broker's counters, summed over labels, from GET /metrics.
fn scrape(port: u16) -> anyhow::Result<HashMap<String, f64>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    // The headers are not metrics (`Content-Length: N` would read as one).
    let body = response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body);
    Ok(counters(body))
}

fn counters(text: &str) -> HashMap<String, f64> {
    let mut sums = HashMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = name.split('{').next().unwrap_or(name);
        *sums.entry(name.to_string()).or_insert(0.0) += value;
    }
    sums
}

fn timings(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> BrokerTimings {
    let delta = |name: &str| {
        after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    let per = |top: f64, bottom: f64| if bottom > 0.0 { top / bottom } else { 0.0 };
    let requests = delta("strand_produce_latency_seconds_count");
    let commits = delta("strand_commits_total");
    BrokerTimings {
        produce_requests: requests,
        produce_mean_ms: per(
            delta("strand_produce_latency_seconds_sum") * 1000.0,
            requests,
        ),
        commits,
        commit_bytes_mean: per(delta("strand_commit_bytes_total"), commits),
        commit_write_ms: per(delta("strand_commit_write_seconds_total") * 1000.0, commits),
        commit_sync_ms: per(delta("strand_commit_sync_seconds_total") * 1000.0, commits),
    }
}

/// `perf record` of the broker for `window`, without call graphs (release builds keep no
/// frame pointers), at 999 samples a second.
fn record(pid: u32, window: Duration, out: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(which("perf").is_some(), "not installed (linux-perf)");
    let status = Command::new("perf")
        .args(["record", "-q", "-F", "999", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .args(["--", "sleep", &format!("{:.1}", window.as_secs_f64())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "perf record failed ({status})");
    Ok(())
}

fn hottest(data: &Path) -> anyhow::Result<Vec<(String, f64)>> {
    let output = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "-q",
            "--no-children",
            "--sort",
            "symbol",
            "-i",
        ])
        .arg(data)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "perf report failed ({})",
        output.status
    );
    Ok(parse_report(&String::from_utf8_lossy(&output.stdout)))
}

/// Lines like `    10.30%  [.] __memmove_avx512_unaligned_erms      -      -`: the share, the
/// symbol, then columns this report does not use.
fn parse_report(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let (share, rest) = line.trim().split_once('%')?;
            let share: f64 = share.trim().parse().ok()?;
            let symbol = rest.trim();
            let symbol = symbol.split_once("] ").map_or(symbol, |(_, name)| name);
            let symbol = symbol.split("  ").next().unwrap_or(symbol);
            Some((symbol.trim().to_string(), share))
        })
        .take(HOTTEST_MAX)
        .collect()
}

/// The "Where the time goes" section of RESULTS.md.
pub fn render(out: &mut String, profiles: &[Profile]) {
    if profiles.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Where the time goes\n\nThe workloads behind the throughput and latency targets, \
         each run again against a fresh durable broker (the measured figures above were taken \
         without a profiler), observed for the measured window: CPU from /proc, the broker's own request and commit timings \
         from its /metrics, and its hottest functions from `perf record` (no call graphs).\n"
    );
    for profile in profiles {
        let _ = writeln!(
            out,
            "### {}\n\n`strand load {}`, {:.1} s observed.\n",
            profile.workload,
            profile.args.join(" "),
            profile.seconds
        );
        let used = profile.broker_shards_cores + profile.broker_other_cores + profile.others_cores;
        let _ = writeln!(
            out,
            "- CPU, in cores of {}: broker shards {:.2}, the broker's other threads (io_uring \
             workers running appending writes and fdatasync, the controller) {:.2}, every \
             other process (the load generator, and perf) {:.2}; {:.0}% of the machine busy.",
            profile.cores,
            profile.broker_shards_cores,
            profile.broker_other_cores,
            profile.others_cores,
            100.0 * used / profile.cores.max(1) as f64
        );
        let timings = &profile.broker;
        #[allow(clippy::cast_precision_loss)]
        let _ = writeln!(
            out,
            "- Broker: {:.0} produce requests a second, {:.3} ms each on average inside the \
             broker; {:.0} group commits a second of {:.0} bytes each, {:.3} ms writing and \
             {:.3} ms in fdatasync on average.",
            timings.produce_requests / profile.seconds.max(f64::MIN_POSITIVE),
            timings.produce_mean_ms,
            timings.commits / profile.seconds.max(f64::MIN_POSITIVE),
            timings.commit_bytes_mean,
            timings.commit_write_ms,
            timings.commit_sync_ms
        );
        if !profile.hottest.is_empty() {
            let hottest: Vec<String> = profile
                .hottest
                .iter()
                .map(|(symbol, share)| format!("`{symbol}` {share:.1}%"))
                .collect();
            let _ = writeln!(
                out,
                "- The broker's hottest functions (share of its CPU samples): {}.",
                hottest.join(", ")
            );
        }
        for note in &profile.notes {
            let _ = writeln!(out, "- Not measured: {note}");
        }
        let _ = writeln!(out);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn proc_stat_lines_give_the_thread_name_and_its_cpu_ticks() {
        let line = "4242 (shard-1) S 1 4242 4242 0 -1 4194560 500 0 0 0 731 269 0 0 20 0 9 0";
        assert_eq!(comm(line), Some("shard-1"));
        assert_eq!(ticks(line), Some(1000));
        // A name with spaces and parentheses.
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0";
        assert_eq!(comm(odd), Some("a (b) c"));
        assert_eq!(ticks(odd), Some(11));
    }

    #[test]
    fn cpu_splits_into_shards_the_broker_s_other_threads_and_everything_else() {
        let before = CpuTimes {
            process: 100,
            shards: 80,
            machine: 300,
        };
        let after = CpuTimes {
            process: 250,
            shards: 200,
            machine: 700,
        };
        assert_eq!(after.used_since(&before), (120, 30, 250));
        // A shard thread that ended took its ticks out of the sum: never negative.
        let shrunk = CpuTimes {
            process: 250,
            shards: 10,
            machine: 700,
        };
        assert_eq!(shrunk.used_since(&before), (0, 150, 250));
    }

    #[test]
    fn machine_busy_counts_all_but_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(machine_busy(stat), Some(100 + 5 + 50 + 3 + 2 + 1));
    }

    #[test]
    fn counters_sum_over_labels_and_timings_are_per_request_and_commit() {
        let before = counters(
            "# TYPE strand_commits_total counter\nstrand_commits_total{partition=\"a\"} 10\n\
             strand_commits_total{partition=\"b\"} 10\nstrand_commit_bytes_total 1000\n\
             strand_commit_write_seconds_total 0.01\nstrand_commit_sync_seconds_total 0.02\n\
             strand_produce_latency_seconds_sum 0.5\nstrand_produce_latency_seconds_count 100\n",
        );
        let after = counters(
            "strand_commits_total{partition=\"a\"} 60\nstrand_commits_total{partition=\"b\"} 60\n\
             strand_commit_bytes_total 101000\nstrand_commit_write_seconds_total 0.11\n\
             strand_commit_sync_seconds_total 0.22\nstrand_produce_latency_seconds_sum 1.5\n\
             strand_produce_latency_seconds_count 600\n",
        );
        let timings = timings(&before, &after);
        assert!((timings.commits - 100.0).abs() < 1e-9);
        assert!((timings.commit_bytes_mean - 1000.0).abs() < 1e-9);
        assert!((timings.commit_write_ms - 1.0).abs() < 1e-9);
        assert!((timings.commit_sync_ms - 2.0).abs() < 1e-9);
        assert!((timings.produce_requests - 500.0).abs() < 1e-9);
        assert!((timings.produce_mean_ms - 2.0).abs() < 1e-9);
    }

    #[test]
    fn perf_report_lines_give_symbols_and_shares() {
        let report = "\n    10.30%  [.] __memmove_avx512_unaligned_erms      -      -\n     \
                      6.64%  [k] _copy_to_iter\n   0.5%  [.] crc32c::hw::crc\nnot a line\n";
        assert_eq!(
            parse_report(report),
            vec![
                ("__memmove_avx512_unaligned_erms".to_string(), 10.30),
                ("_copy_to_iter".to_string(), 6.64),
                ("crc32c::hw::crc".to_string(), 0.5),
            ]
        );
    }
}
