//! A run's result: printed as a table, and written as JSON with the parameters that made it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::stats::{Percentiles, Recorder};

/// Bumped when a field changes meaning, so readers of old files can tell.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    pub workload: String,
    pub bootstrap: String,
    /// The options the run was given, after defaults were applied.
    pub parameters: serde_json::Value,
    pub started_unix_ms: u64,
    /// The measured window: from the end of the warm-up to the last completion.
    pub duration_s: f64,
    /// The workload's main count: acknowledged sends for `produce`, deliveries to consumers
    /// otherwise, replies for `request-reply`.
    pub messages: u64,
    pub bytes: u64,
    pub messages_per_s: f64,
    pub mb_per_s: f64,
    pub errors: u64,
    /// Latency figures by kind: `produce` (send to acknowledgement), `end_to_end` (send to
    /// delivery), `round_trip` (request to reply).
    pub latency: BTreeMap<String, Percentiles>,
    /// The main count per second of the measured window.
    pub timeline: Vec<u64>,
    /// What the run checked against the broker.
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, passed: bool, detail: String) -> Check {
        Check {
            name: name.to_string(),
            passed,
            detail,
        }
    }
}

impl Report {
    /// A report of `main` (the workload's main count) over `duration_s` seconds.
    pub fn new(
        workload: &str,
        bootstrap: &str,
        parameters: serde_json::Value,
        started_unix_ms: u64,
        duration_s: f64,
        main: &Recorder,
    ) -> Report {
        #[allow(clippy::cast_precision_loss)]
        let per_second = |count: u64| {
            if duration_s > 0.0 {
                count as f64 / duration_s
            } else {
                0.0
            }
        };
        Report {
            format_version: FORMAT_VERSION,
            workload: workload.to_string(),
            bootstrap: bootstrap.to_string(),
            parameters,
            started_unix_ms,
            duration_s,
            messages: main.messages,
            bytes: main.bytes,
            messages_per_s: per_second(main.messages),
            mb_per_s: per_second(main.bytes) / 1e6,
            errors: main.errors,
            latency: BTreeMap::new(),
            timeline: main.timeline().to_vec(),
            checks: Vec::new(),
        }
    }

    pub fn with_latency(&mut self, kind: &str, recorder: &Recorder) {
        if let Some(figures) = recorder.percentiles() {
            self.latency.insert(kind.to_string(), figures);
        }
    }

    pub fn passed(&self) -> bool {
        self.errors == 0 && self.checks.iter().all(|check| check.passed)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} against {}: {:.1} s measured",
            self.workload, self.bootstrap, self.duration_s
        );
        let _ = writeln!(
            out,
            "  {:>12} msg/s  {:>9.1} MB/s  {} messages  {} errors",
            format!("{:.0}", self.messages_per_s),
            self.mb_per_s,
            self.messages,
            self.errors
        );
        if !self.latency.is_empty() {
            let _ = writeln!(
                out,
                "  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                "latency ms", "p50", "p90", "p99", "p99.9", "max", "mean"
            );
            for (kind, figures) in &self.latency {
                let _ = writeln!(
                    out,
                    "  {:<12} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                    kind,
                    figures.p50_ms,
                    figures.p90_ms,
                    figures.p99_ms,
                    figures.p999_ms,
                    figures.max_ms,
                    figures.mean_ms
                );
            }
        }
        for check in &self.checks {
            let verdict = if check.passed { "ok" } else { "FAILED" };
            let _ = writeln!(out, "  check {}: {verdict} ({})", check.name, check.detail);
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample() -> Report {
        let mut produced = Recorder::new();
        for index in 0..2000_u64 {
            produced.record(
                Some(Duration::from_micros(index + 100)),
                1024,
                Duration::from_millis(index),
            );
        }
        let mut report = Report::new(
            "produce",
            "127.0.0.1:9092",
            serde_json::json!({ "size": 1024, "acks": "all" }),
            1_700_000_000_000,
            2.0,
            &produced,
        );
        report.with_latency("produce", &produced);
        report.checks.push(Check::new(
            "stored",
            true,
            "2000 acknowledged, 2000 stored".into(),
        ));
        report
    }

    #[test]
    fn figures_follow_from_the_main_count() {
        let report = sample();
        assert!((report.messages_per_s - 1000.0).abs() < 1e-9);
        assert!((report.mb_per_s - 1.024).abs() < 1e-9);
        assert_eq!(report.timeline, vec![1000, 1000]);
        assert!(report.passed());
        let table = report.table();
        assert!(table.contains("1000 msg/s"), "{table}");
        assert!(table.contains("p99.9"), "{table}");
        assert!(table.contains("check stored: ok"), "{table}");
    }

    #[test]
    fn the_json_has_every_field_a_reader_relies_on() {
        let report = sample();
        let value = serde_json::to_value(&report).unwrap();
        for key in [
            "format_version",
            "workload",
            "bootstrap",
            "parameters",
            "started_unix_ms",
            "duration_s",
            "messages",
            "bytes",
            "messages_per_s",
            "mb_per_s",
            "errors",
            "latency",
            "timeline",
            "checks",
        ] {
            assert!(value.get(key).is_some(), "{key} missing from {value}");
        }
        let produce = &value["latency"]["produce"];
        for key in [
            "count", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
        ] {
            assert!(produce[key].is_number(), "{key} missing from {produce}");
        }
        assert_eq!(value["parameters"]["acks"], "all");
        assert_eq!(value["checks"][0]["passed"], true);
        let back: Report = serde_json::from_value(value).unwrap();
        assert_eq!(back.messages, report.messages);
    }

    #[test]
    fn a_failed_check_or_an_error_fails_the_run() {
        let mut report = sample();
        report
            .checks
            .push(Check::new("once", false, "3 duplicates".into()));
        assert!(!report.passed());
        assert!(report.table().contains("check once: FAILED (3 duplicates)"));
        let mut report = sample();
        report.errors = 1;
        assert!(!report.passed());
    }
}
