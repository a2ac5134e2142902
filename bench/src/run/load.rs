//! Runs `strand load` against a broker and keeps its JSON report.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One workload's outcome: the report when `strand load` wrote one, and what went wrong.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub args: Vec<String>,
    pub report: Option<Value>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn mb_per_s(&self) -> Option<f64> {
        self.report.as_ref()?["mb_per_s"].as_f64()
    }

    pub fn messages_per_s(&self) -> Option<f64> {
        self.report.as_ref()?["messages_per_s"].as_f64()
    }

    /// A latency figure, e.g. `("produce", "p99_ms")`.
    pub fn latency(&self, kind: &str, figure: &str) -> Option<f64> {
        self.report.as_ref()?["latency"][kind][figure].as_f64()
    }

    pub fn passed(&self) -> bool {
        self.error.is_none() && self.report.is_some()
    }
}

/// Runs `strand --bootstrap BOOTSTRAP load ARGS --json FILE`, killing it after `timeout`.
pub fn run(
    strand: &Path,
    bootstrap: &str,
    args: &[String],
    json: &PathBuf,
    timeout: Duration,
) -> Outcome {
    eprintln!("   strand load {}", args.join(" "));
    let _ = std::fs::remove_file(json);
    let mut outcome = Outcome {
        args: args.to_vec(),
        ..Outcome::default()
    };
    let child = Command::new(strand)
        .arg("--bootstrap")
        .arg(bootstrap)
        .arg("load")
        .args(args)
        .arg("--json")
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            outcome.error = Some(format!("starting strand load: {error}"));
            return outcome;
        }
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    let output = child.wait_with_output().ok();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
    let (stdout, stderr) = output.map_or_else(Default::default, |output| {
        (text(&output.stdout), text(&output.stderr))
    });
    if !stdout.is_empty() {
        eprintln!("{stdout}");
    }
    outcome.report = std::fs::read_to_string(json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    match status {
        None => outcome.error = Some(format!("did not finish within {}s", timeout.as_secs())),
        Some(status) if !status.success() => {
            let last = stderr.lines().last().unwrap_or("").to_string();
            outcome.error = Some(if outcome.report.is_some() {
                format!("a check failed ({status}) {last}")
                    .trim()
                    .to_string()
            } else {
                format!("failed ({status}): {last}")
            });
        }
        Some(_) => {}
    }
    if let Some(error) = &outcome.error {
        eprintln!("   -> {error}");
    }
    outcome
}
