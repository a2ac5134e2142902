//! Real `strand serve` processes for integration tests: each on a free port with its own
//! data directory, killed when the guard drops, whatever path the test takes.

#![allow(dead_code)]

pub mod cluster;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

/// A running broker; SIGKILLed on drop unless stopped first.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Broker {
    /// A broker on a fresh data directory.
    pub fn start() -> Broker {
        let temp = tempfile::tempdir().expect("temporary directory");
        let mut broker = Broker::start_in(temp.path());
        broker._temp = Some(temp);
        broker
    }

    /// A broker on `data_dir`, which the caller keeps.
    pub fn start_in(data_dir: &Path) -> Broker {
        Broker::start_with(data_dir, &["--metrics", "none"])
    }

    /// A broker on `data_dir` with more `strand serve` flags.
    pub fn start_with(data_dir: &Path, flags: &[&str]) -> Broker {
        Broker::start_on(free_port(), 2, data_dir, flags)
    }

    /// A broker on Kafka port `port` with `cores` shards (a restarted cluster node keeps
    /// its port).
    pub fn start_on(port: u16, cores: usize, data_dir: &Path, flags: &[&str]) -> Broker {
        let child = Command::new(env!("CARGO_BIN_EXE_strand"))
            .args(["serve", "--cores", &cores.to_string(), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(flags)
            // STRAND_TEST_LOG=info shows the brokers' logs in a test's output.
            .env(
                "STRAND_LOG",
                std::env::var("STRAND_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("starting strand serve");
        let mut broker = Broker {
            child: Some(child),
            port,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
        };
        broker.wait_until_listening();
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A librdkafka configuration pointed at this broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("message.timeout.ms", "30000")
            .set("socket.timeout.ms", "30000");
        config
    }

    /// SIGKILL: the process dies at once, as in a crash.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running broker").id()
    }

    /// SIGTERM, then waits for a clean exit; panics if the broker fails to stop in time.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running broker");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("waiting for the broker") {
                assert!(status.success(), "broker exited with {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // A connection to a port nobody listens on can connect to itself (TCP simultaneous
        // open, when the kernel picks the same port as the source): that is not the broker,
        // and it holds the port the broker is about to bind.
        let listening = |port: u16| {
            TcpStream::connect(("127.0.0.1", port))
                .is_ok_and(|stream| stream.local_addr().ok() != stream.peer_addr().ok())
        };
        while !listening(self.port) {
            let child = self.child.as_mut().expect("running broker");
            if let Some(status) = child.try_wait().expect("checking the broker") {
                panic!("broker exited with {status} before listening");
            }
            assert!(
                Instant::now() < deadline,
                "broker did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on, never handed out before in this test process. The kernel may
/// give the same free port to two tests running at once; both brokers would then bind it
/// (SO_REUSEPORT), one would refuse to start, and its test would talk to the other's.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        let port = listener.local_addr().expect("local address").port();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}
