//! `strand produce TOPIC`: each line of stdin becomes a message (split into key and value
//! at `--key-separator`), sent with librdkafka; each delivery is reported like rpk does.

use std::io::BufRead;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first SEP: key before, value after.
    #[arg(short = 'k', long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header for every message, KEY=VALUE (repeatable).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Send to this partition [default: by key, or spread].
    #[arg(short, long)]
    partition: Option<i32>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Print nothing per message.
    #[arg(short, long)]
    quiet: bool,
}

struct Reports {
    quiet: bool,
    failed: Mutex<usize>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(message) => {
                if !self.quiet {
                    println!(
                        "Produced to partition {} at offset {}",
                        message.partition(),
                        message.offset()
                    );
                }
            }
            Err((error, _)) => {
                eprintln!("strand: delivery failed: {error}");
                if let Ok(mut failed) = self.failed.lock() {
                    *failed += 1;
                }
            }
        }
    }
}

/// Sends stdin; `Ok(false)` when a delivery failed.
pub fn run(bootstrap: &str, args: &ProduceArgs) -> anyhow::Result<bool> {
    let headers = args
        .headers
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .with_context(|| format!("header {pair:?} is not KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let producer: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", &args.acks)
        .set("compression.codec", &args.compression)
        .set("linger.ms", "5")
        .create_with_context(Reports {
            quiet: args.quiet,
            failed: Mutex::new(0),
        })
        .context("creating the producer")?;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let (key, value) = match &args.key_separator {
            Some(separator) => match line.split_once(separator.as_str()) {
                Some((key, value)) => (Some(key.to_string()), value.to_string()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let mut message_headers = OwnedHeaders::new();
        for (name, value) in &headers {
            message_headers = message_headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(&args.topic)
            .payload(value.as_str())
            .headers(message_headers);
        if let Some(key) = &key {
            record = record.key(key.as_str());
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error).context("sending a message"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for deliveries")?;
    let failed = producer.context().failed.lock().map_or(1, |failed| *failed);
    Ok(failed == 0)
}
