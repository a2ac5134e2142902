//! How the Kafka listener behaves: addresses, identity, and the bounds on connections,
//! frames and request memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use strand_engine::TopicConfig;
use strand_replication::host::ControllerHandle;

/// The Kafka listener's settings, shared by every shard.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Where every shard listens (SO_REUSEPORT spreads connections over them).
    pub listen: SocketAddr,
    /// The host and port clients are told to connect to (Metadata).
    pub advertised_host: String,
    pub advertised_port: u16,
    /// This broker's node id.
    pub node_id: i32,
    /// The cluster id Metadata and DescribeCluster report.
    pub cluster_id: String,
    /// Create a topic when a client produces to or asks metadata for one that does not exist
    /// (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an automatically created topic (Kafka's `num.partitions`).
    pub default_partitions: u32,
    /// Partitions of `__consumer_offsets` (Kafka's `offsets.topic.num.partitions`).
    pub offsets_partitions: u32,
    /// The engine's topic defaults, so DescribeConfigs can tell a topic's own settings
    /// from the broker's.
    pub topic_defaults: TopicConfig,
    /// The engine's data directory (Kafka's `log.dirs`, for DescribeLogDirs).
    pub data_dir: PathBuf,
    pub limits: NetLimits,
    /// The controller's view when this node is one of a cluster (`--peers`); `None` for a
    /// single node, which is its own controller.
    pub cluster: Option<ControllerHandle>,
}

/// Bounds of the network layer, per shard unless said otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetLimits {
    /// The largest request a client may send (Kafka's `socket.request.max.bytes`).
    pub frame_bytes_max: usize,
    /// Bytes of requests read but not yet answered, over all of a shard's connections; a
    /// connection waits to read its next request while the budget is spent.
    pub request_bytes_in_flight_max: usize,
    /// Open connections on one shard; more are accepted and closed at once.
    pub connections_max: usize,
    /// Requests one connection may have in flight (clients pipeline up to 5 by default).
    pub pipelined_requests_max: usize,
    /// A connection that sends nothing for this long is closed
    /// (Kafka's `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// A request whose bytes do not all arrive within this time closes its connection.
    pub frame_timeout: Duration,
    /// Fetches waiting for data on one shard; past this a fetch answers at once.
    pub fetch_waits_max: usize,
}

impl Default for NetLimits {
    fn default() -> Self {
        NetLimits {
            frame_bytes_max: 100 << 20,
            request_bytes_in_flight_max: 256 << 20,
            connections_max: 10_000,
            pipelined_requests_max: 16,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(30),
            fetch_waits_max: 10_000,
        }
    }
}

impl NetConfig {
    /// A single-node configuration listening and advertising `listen`.
    pub fn new(listen: SocketAddr) -> NetConfig {
        NetConfig {
            listen,
            advertised_host: listen.ip().to_string(),
            advertised_port: listen.port(),
            node_id: 0,
            cluster_id: "strand-cluster".into(),
            auto_create_topics: true,
            default_partitions: 1,
            offsets_partitions: 16,
            topic_defaults: TopicConfig::default(),
            data_dir: PathBuf::from("strand-data"),
            limits: NetLimits::default(),
            cluster: None,
        }
    }

    /// Checks that the bounds fit together; the error names the setting and its value.
    pub fn validate(&self) -> Result<(), String> {
        let limits = &self.limits;
        if limits.request_bytes_in_flight_max < limits.frame_bytes_max {
            return Err(format!(
                "request_bytes_in_flight_max {} must be at least frame_bytes_max {}: one request must fit",
                limits.request_bytes_in_flight_max, limits.frame_bytes_max
            ));
        }
        if limits.frame_bytes_max < 1024 {
            return Err(format!(
                "frame_bytes_max {} is below 1024 bytes",
                limits.frame_bytes_max
            ));
        }
        if limits.pipelined_requests_max == 0 || limits.connections_max == 0 {
            return Err("pipelined_requests_max and connections_max must be at least 1".into());
        }
        if self.offsets_partitions == 0 {
            return Err("offsets_partitions must be at least 1".into());
        }
        if self.default_partitions == 0 {
            return Err("default_partitions must be at least 1".into());
        }
        Ok(())
    }
}
