//! What each shard counts for Prometheus: requests and errors by API, bytes in and out,
//! produce and fetch latency histograms. Counters live in the shard (no atomics); a scrape
//! asks every shard for a snapshot over a channel and renders them together.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsResponse, ApiVersionsResponse, CreatePartitionsResponse, CreateTopicsResponse,
    DeleteGroupsResponse, DeleteTopicsResponse, DescribeClusterResponse, DescribeConfigsResponse,
    DescribeGroupsResponse, FetchResponse, FindCoordinatorResponse, HeartbeatResponse,
    IncrementalAlterConfigsResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse,
    ListGroupsResponse, ListOffsetsResponse, MetadataResponse, OffsetCommitResponse,
    OffsetFetchResponse, OffsetForLeaderEpochResponse, ProduceResponse, SyncGroupResponse,
};
use kafka_protocol::messages::{
    DeleteRecordsResponse, DescribeLogDirsResponse, DescribeProducersResponse,
    DescribeTopicPartitionsResponse, ElectLeadersResponse, OffsetDeleteResponse,
};
use strand_engine::ShardStats;

use crate::broker::Broker;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BOUNDS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A Prometheus histogram of durations.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: [u64; LATENCY_BOUNDS.len() + 1],
    sum_seconds: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; LATENCY_BOUNDS.len() + 1],
            sum_seconds: 0.0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.counts[bucket] += 1;
        self.sum_seconds += seconds;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum_seconds += other.sum_seconds;
    }
}

/// One shard's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardMetrics {
    /// Requests and responses carrying an error, by API name.
    pub requests: BTreeMap<&'static str, (u64, u64)>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub produce_latency: Histogram,
    pub fetch_latency: Histogram,
}

impl ShardMetrics {
    pub fn request(&mut self, api: &'static str, errors: u64) {
        let entry = self.requests.entry(api).or_default();
        entry.0 += 1;
        entry.1 += errors;
    }
}

/// Responses that can say how many error codes they carry.
pub trait CountErrors {
    fn errors(&self) -> u64;
}

fn nonzero(code: i16) -> u64 {
    u64::from(code != 0)
}

macro_rules! count_errors {
    ($($response:ty => |$r:ident| $count:expr;)*) => {
        $(impl CountErrors for $response {
            fn errors(&self) -> u64 {
                let $r = self;
                $count
            }
        })*
    };
}

count_errors! {
    ApiVersionsResponse => |r| nonzero(r.error_code);
    MetadataResponse => |r| r.topics.iter().map(|t| nonzero(t.error_code)).sum();
    ProduceResponse => |r| r.responses.iter().flat_map(|t| &t.partition_responses).map(|p| nonzero(p.error_code)).sum();
    FetchResponse => |r| nonzero(r.error_code) + r.responses.iter().flat_map(|t| &t.partitions).map(|p| nonzero(p.error_code)).sum::<u64>();
    ListOffsetsResponse => |r| r.topics.iter().flat_map(|t| &t.partitions).map(|p| nonzero(p.error_code)).sum();
    CreateTopicsResponse => |r| r.topics.iter().map(|t| nonzero(t.error_code)).sum();
    DeleteTopicsResponse => |r| r.responses.iter().map(|t| nonzero(t.error_code)).sum();
    CreatePartitionsResponse => |r| r.results.iter().map(|t| nonzero(t.error_code)).sum();
    DescribeConfigsResponse => |r| r.results.iter().map(|t| nonzero(t.error_code)).sum();
    AlterConfigsResponse => |r| r.responses.iter().map(|t| nonzero(t.error_code)).sum();
    IncrementalAlterConfigsResponse => |r| r.responses.iter().map(|t| nonzero(t.error_code)).sum();
    DescribeClusterResponse => |r| nonzero(r.error_code);
    OffsetForLeaderEpochResponse => |r| r.topics.iter().flat_map(|t| &t.partitions).map(|p| nonzero(p.error_code)).sum();
    FindCoordinatorResponse => |r| nonzero(r.error_code) + r.coordinators.iter().map(|c| nonzero(c.error_code)).sum::<u64>();
    InitProducerIdResponse => |r| nonzero(r.error_code);
    JoinGroupResponse => |r| nonzero(r.error_code);
    SyncGroupResponse => |r| nonzero(r.error_code);
    HeartbeatResponse => |r| nonzero(r.error_code);
    LeaveGroupResponse => |r| nonzero(r.error_code) + r.members.iter().map(|m| nonzero(m.error_code)).sum::<u64>();
    OffsetCommitResponse => |r| r.topics.iter().flat_map(|t| &t.partitions).map(|p| nonzero(p.error_code)).sum();
    OffsetFetchResponse => |r| nonzero(r.error_code) + r.topics.iter().flat_map(|t| &t.partitions).map(|p| nonzero(p.error_code)).sum::<u64>();
    ListGroupsResponse => |r| nonzero(r.error_code);
    DescribeGroupsResponse => |r| r.groups.iter().map(|g| nonzero(g.error_code)).sum();
    DeleteGroupsResponse => |r| r.results.iter().map(|g| nonzero(g.error_code)).sum();
    OffsetDeleteResponse => |r| nonzero(r.error_code) + r.topics.iter().flat_map(|t| &t.partitions).map(|p| nonzero(p.error_code)).sum::<u64>();
    DeleteRecordsResponse => |r| r.topics.iter().flat_map(|t| &t.partitions).map(|p| nonzero(p.error_code)).sum();
    DescribeProducersResponse => |r| r.topics.iter().flat_map(|t| &t.partitions).map(|p| nonzero(p.error_code)).sum();
    DescribeLogDirsResponse => |r| nonzero(r.error_code) + r.results.iter().map(|d| nonzero(d.error_code)).sum::<u64>();
    DescribeTopicPartitionsResponse => |r| r.topics.iter().map(|t| nonzero(t.error_code)).sum();
    ElectLeadersResponse => |r| nonzero(r.error_code) + r.replica_election_results.iter().flat_map(|t| &t.partition_result).filter(|p| p.error_code != ResponseError::ElectionNotNeeded.code()).map(|p| nonzero(p.error_code)).sum::<u64>();
}

/// Everything a scrape learns from one shard.
#[derive(Clone, Debug)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub metrics: ShardMetrics,
    pub connections: usize,
    pub groups: usize,
    pub stats: ShardStats,
}

type SnapshotReply = flume::Sender<ShardSnapshot>;

/// The shards' metrics inboxes, made before the shards start.
#[derive(Debug)]
pub struct MetricsHub {
    senders: Vec<flume::Sender<SnapshotReply>>,
    inboxes: Mutex<Vec<Option<flume::Receiver<SnapshotReply>>>>,
}

impl MetricsHub {
    pub fn new(shards: usize) -> Arc<MetricsHub> {
        let (senders, inboxes) = (0..shards)
            .map(|_| {
                let (sender, inbox) = flume::bounded(4);
                (sender, Some(inbox))
            })
            .unzip();
        Arc::new(MetricsHub {
            senders,
            inboxes: Mutex::new(inboxes),
        })
    }

    pub fn take_inbox(&self, shard: usize) -> Option<flume::Receiver<SnapshotReply>> {
        self.inboxes
            .lock()
            .ok()?
            .get_mut(shard)
            .and_then(Option::take)
    }

    /// Asks every shard for its snapshot, waiting at most `timeout` for each; blocking, for
    /// a thread outside the shards.
    pub fn gather(&self, timeout: Duration) -> Vec<ShardSnapshot> {
        let answers: Vec<_> = self
            .senders
            .iter()
            .filter_map(|sender| {
                let (reply, answer) = flume::bounded(1);
                sender.send_timeout(reply, timeout).ok().map(|()| answer)
            })
            .collect();
        answers
            .into_iter()
            .filter_map(|answer| answer.recv_timeout(timeout).ok())
            .collect()
    }
}

/// Answers snapshot requests for this shard until it stops.
pub async fn answer(broker: Rc<Broker>, inbox: flume::Receiver<SnapshotReply>) {
    while let Ok(reply) = inbox.recv_async().await {
        let shard = broker.router.shard();
        let stats = broker.router.stats(shard).await.unwrap_or_default();
        let snapshot = ShardSnapshot {
            shard: shard.index(),
            metrics: broker.metrics.borrow().clone(),
            connections: broker.connections.get(),
            groups: broker.groups.get(),
            stats,
        };
        let _ = reply.send(snapshot);
    }
}

/// A per-shard gauge or counter of the exposition.
struct ShardSeries {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&ShardSnapshot) -> f64,
}

#[allow(clippy::cast_precision_loss)] // counters far below 2^53
const SHARD_SERIES: [ShardSeries; 13] = [
    ShardSeries {
        name: "strand_bytes_in_total",
        kind: "counter",
        help: "Request bytes read.",
        value: |s| s.metrics.bytes_in as f64,
    },
    ShardSeries {
        name: "strand_bytes_out_total",
        kind: "counter",
        help: "Response bytes written.",
        value: |s| s.metrics.bytes_out as f64,
    },
    ShardSeries {
        name: "strand_connections",
        kind: "gauge",
        help: "Open client connections.",
        value: |s| s.connections as f64,
    },
    ShardSeries {
        name: "strand_partitions",
        kind: "gauge",
        help: "Partitions the shard owns.",
        value: |s| s.stats.partitions as f64,
    },
    ShardSeries {
        name: "strand_groups",
        kind: "gauge",
        help: "Consumer groups the shard coordinates.",
        value: |s| s.groups as f64,
    },
    ShardSeries {
        name: "strand_shard_queue_depth",
        kind: "gauge",
        help: "Requests waiting in the shard's cross-core channel.",
        value: |s| s.stats.queue_depth as f64,
    },
    ShardSeries {
        name: "strand_batch_cache_bytes",
        kind: "gauge",
        help: "Bytes in the shard's batch cache.",
        value: |s| s.stats.cache_bytes as f64,
    },
    ShardSeries {
        name: "strand_fetch_waits",
        kind: "gauge",
        help: "Fetches waiting for data.",
        value: |s| s.stats.data_waits as f64,
    },
    ShardSeries {
        name: "strand_commits_total",
        kind: "counter",
        help: "Group commits completed (one write and one fdatasync of a partition each).",
        value: |s| s.stats.commits.commits as f64,
    },
    ShardSeries {
        name: "strand_commit_batches_total",
        kind: "counter",
        help: "Record batches made durable by group commits.",
        value: |s| s.stats.commits.batches as f64,
    },
    ShardSeries {
        name: "strand_commit_bytes_total",
        kind: "counter",
        help: "Bytes of record batches made durable by group commits.",
        value: |s| s.stats.commits.bytes as f64,
    },
    ShardSeries {
        name: "strand_commit_write_seconds_total",
        kind: "counter",
        help: "Time group commits spent writing (files created included).",
        value: |s| s.stats.commits.write_time.as_secs_f64(),
    },
    ShardSeries {
        name: "strand_commit_sync_seconds_total",
        kind: "counter",
        help: "Time group commits spent in fdatasync.",
        value: |s| s.stats.commits.sync_time.as_secs_f64(),
    },
];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The Prometheus text exposition of `snapshots`.
pub fn render(snapshots: &[ShardSnapshot]) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "strand_requests_total",
        "counter",
        "Kafka requests by API.",
    );
    for snapshot in snapshots {
        for (api, (requests, _)) in &snapshot.metrics.requests {
            let shard = snapshot.shard;
            let _ = writeln!(
                out,
                "strand_requests_total{{shard=\"{shard}\",api=\"{api}\"}} {requests}"
            );
        }
    }
    family(
        &mut out,
        "strand_request_errors_total",
        "counter",
        "Error codes in responses, by API.",
    );
    for snapshot in snapshots {
        for (api, (_, errors)) in &snapshot.metrics.requests {
            let shard = snapshot.shard;
            let _ = writeln!(
                out,
                "strand_request_errors_total{{shard=\"{shard}\",api=\"{api}\"}} {errors}"
            );
        }
    }
    for series in &SHARD_SERIES {
        family(&mut out, series.name, series.kind, series.help);
        for snapshot in snapshots {
            let _ = writeln!(
                out,
                "{}{{shard=\"{}\"}} {}",
                series.name,
                snapshot.shard,
                (series.value)(snapshot)
            );
        }
    }
    histogram(
        &mut out,
        "strand_produce_latency_seconds",
        "Produce request latency (to durable).",
        snapshots,
        |s| &s.metrics.produce_latency,
    );
    histogram(
        &mut out,
        "strand_fetch_latency_seconds",
        "Fetch request latency, long-poll waits included.",
        snapshots,
        |s| &s.metrics.fetch_latency,
    );
    family(
        &mut out,
        "strand_partition_disk_bytes",
        "gauge",
        "Bytes on disk per partition.",
    );
    for snapshot in snapshots {
        for (partition, bytes) in &snapshot.stats.partition_bytes {
            let _ = writeln!(
                out,
                "strand_partition_disk_bytes{{partition=\"{partition}\"}} {bytes}"
            );
        }
    }
    out
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    snapshots: &[ShardSnapshot],
    pick: fn(&ShardSnapshot) -> &Histogram,
) {
    family(out, name, "histogram", help);
    for snapshot in snapshots {
        let mut merged = Histogram::default();
        merged.merge(pick(snapshot));
        let shard = snapshot.shard;
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BOUNDS.iter().zip(merged.counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{shard=\"{shard}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {}",
            merged.count()
        );
        let _ = writeln!(
            out,
            "{name}_sum{{shard=\"{shard}\"}} {}",
            merged.sum_seconds
        );
        let _ = writeln!(out, "{name}_count{{shard=\"{shard}\"}} {}", merged.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_in_the_exposition() {
        let mut metrics = ShardMetrics::default();
        metrics.produce_latency.observe(Duration::from_micros(50));
        metrics.produce_latency.observe(Duration::from_millis(3));
        metrics.request("Produce", 0);
        metrics.request("Produce", 2);
        let snapshot = ShardSnapshot {
            shard: 0,
            metrics,
            connections: 1,
            groups: 0,
            stats: ShardStats {
                partition_bytes: vec![("orders-0".into(), 4096)],
                commits: strand_engine::group_commit::CommitProbe {
                    commits: 3,
                    sync_time: Duration::from_millis(1500),
                    ..Default::default()
                },
                ..ShardStats::default()
            },
        };
        let text = render(&[snapshot]);
        assert!(
            text.contains("strand_produce_latency_seconds_bucket{shard=\"0\",le=\"0.0001\"} 1")
        );
        assert!(text.contains("strand_produce_latency_seconds_bucket{shard=\"0\",le=\"0.005\"} 2"));
        assert!(text.contains("strand_produce_latency_seconds_count{shard=\"0\"} 2"));
        assert!(text.contains("strand_requests_total{shard=\"0\",api=\"Produce\"} 2"));
        assert!(text.contains("strand_request_errors_total{shard=\"0\",api=\"Produce\"} 2"));
        assert!(text.contains("strand_partition_disk_bytes{partition=\"orders-0\"} 4096"));
        assert!(text.contains("strand_commits_total{shard=\"0\"} 3"));
        assert!(text.contains("strand_commit_sync_seconds_total{shard=\"0\"} 1.5"));
    }
}
