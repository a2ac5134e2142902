//! Broker processes under measurement: Strand (`strand serve`) and Tansu, each on a free
//! loopback port, killed when dropped; with their start time and memory read from /proc.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running broker; SIGKILLed on drop unless stopped first.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    pub port: u16,
    pub name: String,
    /// From spawning the process until it answered ApiVersions.
    pub ready_after: Duration,
}

/// Resident memory of a process, from /proc/PID/status.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    /// Resident now.
    pub rss_bytes: u64,
    /// The most it was ever resident (VmHWM).
    pub peak_rss_bytes: u64,
}

impl BrokerProcess {
    /// `strand serve` on `data_dir`; `fsync` false adds --no-fsync.
    pub fn strand(binary: &Path, data_dir: &Path, fsync: bool) -> anyhow::Result<BrokerProcess> {
        let port = free_port()?;
        let mut command = strand_command(binary, data_dir, port);
        command.args(["--metrics", "none"]);
        if !fsync {
            command.arg("--no-fsync");
        }
        BrokerProcess::spawn(
            if fsync { "strand" } else { "strand --no-fsync" },
            command,
            port,
        )
    }

    /// A durable `strand serve` on `data_dir` serving its metrics; with the metrics port.
    pub fn strand_with_metrics(
        binary: &Path,
        data_dir: &Path,
    ) -> anyhow::Result<(BrokerProcess, u16)> {
        let port = free_port()?;
        let mut metrics = free_port()?;
        while metrics == port {
            metrics = free_port()?;
        }
        let mut command = strand_command(binary, data_dir, port);
        command.args(["--metrics", &format!("127.0.0.1:{metrics}")]);
        Ok((BrokerProcess::spawn("strand", command, port)?, metrics))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Tansu's broker with `storage` (`sqlite://FILE` or `memory://tansu/`).
    pub fn tansu(binary: &Path, storage: &str) -> anyhow::Result<BrokerProcess> {
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(binary);
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", storage])
            .env("RUST_LOG", "warn");
        BrokerProcess::spawn(&format!("tansu {storage}"), command, port)
    }

    fn spawn(name: &str, mut command: Command, port: u16) -> anyhow::Result<BrokerProcess> {
        let started = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut broker = BrokerProcess {
            child: Some(child),
            port,
            name: name.to_string(),
            ready_after: Duration::ZERO,
        };
        broker.wait_ready(started)?;
        Ok(broker)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self, started: Instant) -> anyhow::Result<()> {
        let deadline = started + Duration::from_secs(60);
        loop {
            if api_versions(self.port).is_ok() {
                self.ready_after = started.elapsed();
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("{} exited with {status} before answering", self.name);
            }
            if Instant::now() > deadline {
                bail!("{} did not answer ApiVersions within 60 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn memory(&self) -> Memory {
        let Some(child) = &self.child else {
            return Memory::default();
        };
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let field = |name: &str| kib_field(&status, name).map_or(0, |kib| kib * 1024);
        Memory {
            rss_bytes: field("VmRSS:"),
            peak_rss_bytes: field("VmHWM:"),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 30 s.
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn strand_command(binary: &Path, data_dir: &Path, port: u16) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("STRAND_LOG", "warn");
    command
}

/// A `NAME: N kB` line of a /proc file such as status or meminfo, in KiB.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Sends ApiVersions v0 and reads the answer: the broker is serving.
fn api_versions(port: u16) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // Length 10: api key 18, version 0, correlation id 1, no client id.
    stream.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])?;
    let mut prefix = [0_u8; 4];
    stream.read_exact(&mut prefix)?;
    let len = u32::from_be_bytes(prefix) as usize;
    anyhow::ensure!(
        (6..1 << 20).contains(&len),
        "odd ApiVersions answer of {len} bytes"
    );
    let mut body = vec![0; len];
    stream.read_exact(&mut body)?;
    anyhow::ensure!(body[..4] == [0, 0, 0, 1], "answer to another request");
    Ok(())
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The `tansu` binary: on PATH or in ~/.cargo/bin, else installed with cargo (about 17
/// minutes on two cores the first time).
pub fn tansu_binary() -> anyhow::Result<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = PathBuf::from(home).join(".cargo/bin/tansu");
    if let Some(found) = which("tansu") {
        return Ok(found);
    }
    if installed.exists() {
        return Ok(installed);
    }
    eprintln!("== installing tansu 0.6.0 with cargo install (about 17 minutes here)");
    let status = Command::new("cargo")
        .args(["install", "tansu", "--version", "0.6.0", "--locked"])
        .args(["--features", "libsql,dynostore"])
        .status()
        .context("running cargo install tansu")?;
    anyhow::ensure!(status.success(), "cargo install tansu failed: {status}");
    Ok(installed)
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
