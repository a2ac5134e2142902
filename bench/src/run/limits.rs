//! The machine's limits that Strand is compared with: the disk's sequential O_DIRECT write
//! rate with and without fdatasync after each write (fio, installed from Debian's packages
//! when missing), fdatasync latency of small writes, and one loopback TCP stream.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::broker::which;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DiskLimits {
    /// 1 MiB sequential O_DIRECT writes, bytes a second.
    pub write_1mib_bytes_per_s: f64,
    /// The same with fdatasync after each write.
    pub write_1mib_fdatasync_bytes_per_s: f64,
    /// 4 KiB O_DIRECT writes each followed by fdatasync: writes a second and the write plus
    /// sync latency percentiles in milliseconds.
    pub write_4kib_fdatasync_per_s: f64,
    pub write_4kib_fdatasync_p50_ms: f64,
    pub write_4kib_fdatasync_p99_ms: f64,
    pub fio_version: String,
}

pub fn ensure_fio() -> anyhow::Result<()> {
    if which("fio").is_some() {
        return Ok(());
    }
    eprintln!("== installing fio from Debian's packages");
    let update = Command::new("apt-get").args(["update", "-qq"]).status()?;
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq", "fio"])
        .status()?;
    if !update.success() || !install.success() || which("fio").is_none() {
        bail!("could not install fio with apt-get");
    }
    Ok(())
}

/// Runs one fio job writing `dir/fio.dat` and returns its JSON report.
fn fio(dir: &Path, block: &str, fdatasync: bool, seconds: u64) -> anyhow::Result<Value> {
    let file = dir.join("fio.dat");
    let mut command = Command::new("fio");
    command
        .arg("--name=seqwrite")
        .arg(format!("--filename={}", file.display()))
        .args(["--rw=write", "--direct=1", "--ioengine=psync", "--size=1G"])
        .arg(format!("--bs={block}"))
        .arg(format!("--runtime={seconds}"))
        .args(["--time_based", "--output-format=json"]);
    if fdatasync {
        command.arg("--fdatasync=1");
    }
    let output = command.output().context("running fio")?;
    let _ = std::fs::remove_file(&file);
    if !output.status.success() {
        bail!("fio failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    serde_json::from_slice(&output.stdout).context("reading fio's JSON")
}

pub fn disk(dir: &Path, seconds: u64) -> anyhow::Result<DiskLimits> {
    ensure_fio()?;
    let bandwidth = |report: &Value| {
        report["jobs"][0]["write"]["bw_bytes"]
            .as_f64()
            .unwrap_or(0.0)
    };
    let plain = fio(dir, "1M", false, seconds)?;
    let synced = fio(dir, "1M", true, seconds)?;
    let small = fio(dir, "4k", true, seconds)?;
    let job = &small["jobs"][0];
    // fio reports the write's and the sync's latency apart; a durable small write pays both.
    let percentile = |name: &str| {
        let at = |part: &str| {
            job[part]["lat_ns"]["percentile"][name]
                .as_f64()
                .or_else(|| job[part]["clat_ns"]["percentile"][name].as_f64())
                .unwrap_or(0.0)
        };
        (at("write") + at("sync")) / 1e6
    };
    Ok(DiskLimits {
        write_1mib_bytes_per_s: bandwidth(&plain),
        write_1mib_fdatasync_bytes_per_s: bandwidth(&synced),
        write_4kib_fdatasync_per_s: job["write"]["iops"].as_f64().unwrap_or(0.0),
        write_4kib_fdatasync_p50_ms: percentile("50.000000"),
        write_4kib_fdatasync_p99_ms: percentile("99.000000"),
        fio_version: plain["fio version"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

/// One TCP stream over loopback, 1 MiB writes for `duration`: bytes a second.
pub fn loopback(duration: Duration) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0_u8; 1 << 20];
        let mut total = 0;
        loop {
            let read = stream.read(&mut buffer)?;
            if read == 0 {
                return Ok(total);
            }
            total += read as u64;
        }
    });
    let mut stream = TcpStream::connect(address)?;
    let chunk = vec![0x5a_u8; 1 << 20];
    let started = Instant::now();
    while started.elapsed() < duration {
        stream.write_all(&chunk)?;
    }
    drop(stream);
    let total = reader
        .join()
        .map_err(|_| anyhow::anyhow!("loopback reader panicked"))??;
    #[allow(clippy::cast_precision_loss)]
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
