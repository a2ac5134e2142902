//! A three-node Strand cluster on this machine (one shard each): durable produce with
//! acks=all through chains of three, as a ratio of the single node's in the same run, and
//! failover time: the head of a partition SIGKILLed under an idempotent acks=all
//! producer, from the kill to the first acknowledgement of a message sent after it,
//! repeated (the killed node restarted and rejoined each time) for a median and a maximum.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::Options;
use super::broker::free_port;
use super::load::{self, Outcome};
use super::systems::{produce_args, timeout};

/// What the cluster run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterRun {
    pub produce: Option<Outcome>,
    /// Milliseconds from each kill to the first acknowledgement after it.
    pub failover_ms: Vec<f64>,
    pub error: Option<String>,
}

impl ClusterRun {
    /// The median and largest failover time.
    pub fn failover(&self) -> Option<(f64, f64)> {
        let mut times = self.failover_ms.clone();
        times.sort_by(f64::total_cmp);
        Some((*times.get(times.len() / 2)?, *times.last()?))
    }
}

const TOPIC: &str = "bench-failover";

/// Runs the cluster workloads; what failed is in the result's `error`.
pub fn run(options: &Options, strand: &Path) -> ClusterRun {
    let mut run = ClusterRun::default();
    let mut cluster = match Cluster::start(strand, &options.work.join("cluster")) {
        Ok(cluster) => cluster,
        Err(error) => {
            run.error = Some(format!("{error:#}"));
            return run;
        }
    };
    let json = options.out.join("load/cluster-produce.json");
    let args = produce_args(
        options,
        &["--partitions", "4", "--producers", "2", "--replicas", "3"],
    );
    run.produce = Some(load::run(
        strand,
        &cluster.bootstrap_all(),
        &args,
        &json,
        timeout(options),
    ));
    if options.failover_kills > 0 {
        eprintln!("   {} head kills", options.failover_kills);
        match failovers(&mut cluster, options.failover_kills) {
            Ok(times) => run.failover_ms = times,
            Err(error) => run.error = Some(format!("failover: {error:#}")),
        }
    }
    cluster.stop();
    run
}

/// Three `strand serve --node-id N --peers ...` processes, killed when dropped.
struct Cluster {
    strand: PathBuf,
    dir: PathBuf,
    ports: Vec<u16>,
    peers: String,
    nodes: Vec<Option<Child>>,
}

impl Cluster {
    fn start(strand: &Path, dir: &Path) -> anyhow::Result<Cluster> {
        let _ = std::fs::remove_dir_all(dir);
        let internal = (0..3)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let peers = internal
            .iter()
            .enumerate()
            .map(|(id, port)| format!("{id}=127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            strand: strand.to_path_buf(),
            dir: dir.to_path_buf(),
            ports: (0..3).map(|_| free_port()).collect::<anyhow::Result<_>>()?,
            peers,
            nodes: vec![None, None, None],
        };
        for id in 0..3 {
            cluster.start_node(id)?;
        }
        let started = Instant::now();
        while !cluster.healthy() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the cluster did not come up within 60 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(cluster)
    }

    fn start_node(&mut self, id: usize) -> anyhow::Result<()> {
        let child = Command::new(&self.strand)
            .args(["serve", "--cores", "1", "--metrics", "none"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.ports[id]))
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{id}")))
            .args(["--node-id", &id.to_string(), "--peers", &self.peers])
            .env("STRAND_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        self.nodes[id] = Some(child);
        Ok(())
    }

    fn kill(&mut self, id: usize) {
        if let Some(mut child) = self.nodes[id].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn bootstrap_all(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `strand cluster status` exits 0: every node live, a controller known.
    fn healthy(&self) -> bool {
        self.ports.iter().any(|port| {
            Command::new(&self.strand)
                .args(["--bootstrap", &format!("127.0.0.1:{port}")])
                .args(["cluster", "status", "--nodes-only"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap_all())
            .set("message.timeout.ms", "30000")
            .set("topic.metadata.refresh.interval.ms", "500");
        config
    }

    /// The failover topic's chain, head first, once `done` holds of it.
    fn chain(&self, done: impl Fn(&[usize]) -> bool) -> anyhow::Result<Vec<usize>> {
        let consumer: BaseConsumer = self.client().create()?;
        let started = Instant::now();
        loop {
            if let Ok(metadata) = consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(2))
                && let Some(partition) = metadata
                    .topics()
                    .first()
                    .and_then(|topic| topic.partitions().first())
                && partition.error().is_none()
                && partition.replicas().first() == Some(&partition.leader())
            {
                let members: Vec<usize> = partition
                    .replicas()
                    .iter()
                    .filter_map(|&id| usize::try_from(id).ok())
                    .collect();
                if done(&members) {
                    return Ok(members);
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the chain did not settle within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) {
        for id in 0..self.nodes.len() {
            if let Some(child) = &self.nodes[id] {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
        }
        for id in 0..self.nodes.len() {
            if let Some(mut child) = self.nodes[id].take() {
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 0..self.nodes.len() {
            self.kill(id);
        }
    }
}

/// Kills the head `kills` times under an idempotent acks=all producer; the time from each
/// kill to the first acknowledgement of a message sent after it.
fn failovers(cluster: &mut Cluster, kills: usize) -> anyhow::Result<Vec<f64>> {
    let status = Command::new(&cluster.strand)
        .args(["--bootstrap", &format!("127.0.0.1:{}", cluster.ports[0])])
        .args(["topic", "create", TOPIC, "-p", "1", "-r", "3"])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "creating {TOPIC}: {status}");
    cluster.chain(|members| members.len() == 3)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (acks, acked) = mpsc::channel::<(Instant, Instant)>();
    let producer = {
        let config = cluster.client();
        let stop = stop.clone();
        std::thread::spawn(move || produce(config, &stop, &acks))
    };
    let mut times = Vec::with_capacity(kills);
    let outcome = (|| {
        for round in 0..kills {
            let head = cluster.chain(|members| members.len() == 3)?[0];
            acked.try_iter().for_each(drop);
            let killed_at = Instant::now();
            cluster.kill(head);
            let resumed = loop {
                let (sent, at) = acked
                    .recv_timeout(Duration::from_secs(60))
                    .context("no acknowledgement within 60 s of a kill")?;
                if sent > killed_at {
                    break at - killed_at;
                }
            };
            eprintln!("   kill {round}: node {head}, resumed after {resumed:?}");
            times.push(resumed.as_secs_f64() * 1000.0);
            cluster.start_node(head)?;
            cluster.chain(|members| members.len() == 3 && members.last() == Some(&head))?;
        }
        anyhow::Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = producer.join();
    outcome.map(|()| times)
}

/// Sends to the failover topic, 8 messages at a time, until `stop`: (sent, acknowledged)
/// instants of each acknowledged message.
fn produce(mut config: ClientConfig, stop: &AtomicBool, acked: &mpsc::Sender<(Instant, Instant)>) {
    let Ok(producer) = config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("retry.backoff.ms", "50")
        .create::<FutureProducer>()
    else {
        return;
    };
    let payload = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let sends: Vec<_> = (0..8)
            .filter_map(|_| {
                let sent = Instant::now();
                let record = FutureRecord::<(), _>::to(TOPIC).payload(&payload[..]);
                producer
                    .send_result(record)
                    .ok()
                    .map(|delivery| (sent, delivery))
            })
            .collect();
        for (sent, delivery) in sends {
            if let Ok(Ok(_)) = futures::executor::block_on(delivery) {
                let _ = acked.send((sent, Instant::now()));
            }
        }
    }
}
