//! The Prometheus endpoint of a real broker after some traffic.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use support::{Broker, free_port};

fn scrape(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The sum over shards of the samples of `metric` whose labels contain `labels`.
fn sample(text: &str, metric: &str, labels: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")) && line.contains(labels))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        !values.is_empty(),
        "no sample {metric} with {labels} in\n{text}"
    );
    values.iter().sum()
}

#[test]
fn metrics_count_requests_bytes_latency_and_partition_sizes() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let broker = Broker::start_with(data.path(), &["--metrics", &address]);
    let mut produce = Command::new(env!("CARGO_BIN_EXE_strand"))
        .args([
            "--bootstrap",
            &broker.bootstrap(),
            "produce",
            "measured",
            "-q",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: String = (0..100).map(|i| format!("message {i}\n")).collect();
    produce
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(produce.wait().unwrap().success());

    let response = scrape(port, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(sample(&response, "strand_requests_total", "api=\"Produce\"") >= 1.0);
    assert!(sample(&response, "strand_requests_total", "api=\"Metadata\"") >= 1.0);
    assert!(sample(&response, "strand_bytes_in_total", "") > 1000.0);
    assert!(sample(&response, "strand_bytes_out_total", "") > 0.0);
    assert!(sample(&response, "strand_produce_latency_seconds_count", "") >= 1.0);
    let size = sample(
        &response,
        "strand_partition_disk_bytes",
        "partition=\"measured-0\"",
    );
    assert!(size > 1000.0, "{size}");
    assert!((sample(&response, "strand_partitions", "") - 1.0).abs() < f64::EPSILON);
    assert!(response.contains("# TYPE strand_fetch_latency_seconds histogram"));
    assert!(scrape(port, "/other").starts_with("HTTP/1.1 404"));
}
