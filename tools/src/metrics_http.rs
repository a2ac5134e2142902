//! The Prometheus endpoint of `strand serve`: `GET /metrics` on its own thread, one scrape
//! at a time, each asking every shard for a snapshot.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strand_net::MetricsHub;

/// How long a scrape waits for each shard.
const SHARD_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request line and headers read.
const REQUEST_BYTES_MAX: usize = 8 << 10;

/// Binds `address` and serves scrapes on a thread of its own until the process exits.
pub fn start(address: SocketAddr, hub: Arc<MetricsHub>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(address)
        .with_context(|| format!("binding the metrics endpoint {address}"))?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(error) = scrape(stream, &hub) {
                    tracing::debug!(%error, "metrics request failed");
                }
            }
        })
        .context("starting the metrics thread")?;
    Ok(bound)
}

fn scrape(stream: TcpStream, hub: &MetricsHub) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(REQUEST_BYTES_MAX as u64);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the headers, up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?"))
    {
        (
            "200 OK",
            strand_net::metrics::render(&hub.gather(SHARD_TIMEOUT)),
        )
    } else {
        ("404 Not Found", "only GET /metrics is served\n".to_string())
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
