//! `strand consume TOPIC`: prints messages as `--format` says, as a member of `--group` or
//! reading every partition directly.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Consume as a member of this group, committing offsets as it goes.
    #[arg(short, long)]
    group: Option<String>,
    /// Start at the earliest offset (for a group: where it has no committed offset).
    #[arg(short = 'b', long)]
    from_beginning: bool,
    /// Stop after this many messages.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Stop once every partition has been read to its end.
    #[arg(short = 'e', long)]
    exit_at_end: bool,
    /// How to print each message: %t topic, %p partition, %o offset, %k key, %v value,
    /// %h headers (k=v,…), %T timestamp (ms), \n newline, \t tab.
    #[arg(short, long, default_value = "%v\\n")]
    format: String,
}

pub fn run(bootstrap: &str, args: &ConsumeArgs) -> anyhow::Result<bool> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.partition.eof", "true")
        .set(
            "auto.offset.reset",
            if args.from_beginning {
                "earliest"
            } else {
                "latest"
            },
        );
    match &args.group {
        // Only printed messages count as consumed: their offsets are stored one by one.
        Some(group) => config
            .set("group.id", group)
            .set("enable.auto.offset.store", "false"),
        None => config
            .set("group.id", "strand-cli")
            .set("enable.auto.commit", "false"),
    };
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    let partitions = match &args.group {
        Some(_) => {
            consumer.subscribe(&[&args.topic])?;
            None
        }
        None => {
            let metadata = consumer
                .fetch_metadata(Some(&args.topic), Duration::from_secs(30))
                .context("reading the topic's metadata")?;
            let topic = &metadata.topics()[0];
            if let Some(error) = topic.error() {
                anyhow::bail!("topic {}: {error:?}", args.topic);
            }
            let start = if args.from_beginning {
                Offset::Beginning
            } else {
                Offset::End
            };
            let mut assignment = TopicPartitionList::new();
            for partition in topic.partitions() {
                assignment.add_partition_offset(&args.topic, partition.id(), start)?;
            }
            consumer.assign(&assignment)?;
            Some(topic.partitions().len())
        }
    };
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let mut at_end = std::collections::BTreeSet::new();
    loop {
        if args.count.is_some_and(|count| printed >= count) {
            break;
        }
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        match polled {
            Ok(message) => {
                at_end.remove(&message.partition());
                out.write_all(&render(&args.format, &message))?;
                out.flush()?;
                printed += 1;
                if args.group.is_some() {
                    consumer.store_offset_from_message(&message)?;
                }
            }
            Err(KafkaError::PartitionEOF(partition)) => {
                at_end.insert(partition);
                let assigned =
                    partitions.or_else(|| consumer.assignment().ok().map(|list| list.count()));
                if args.exit_at_end && assigned.is_some_and(|n| n > 0 && at_end.len() >= n) {
                    break;
                }
            }
            Err(error) => return Err(error).context("consuming"),
        }
    }
    if args.group.is_some() {
        match consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
            Ok(())
            | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => return Err(error).context("committing offsets"),
        }
    }
    Ok(true)
}

fn render(format: &str, message: &BorrowedMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(spec)) => {
                chars.next();
                match spec {
                    't' => out.extend_from_slice(message.topic().as_bytes()),
                    'p' => out.extend_from_slice(message.partition().to_string().as_bytes()),
                    'o' => out.extend_from_slice(message.offset().to_string().as_bytes()),
                    'k' => out.extend_from_slice(message.key().unwrap_or_default()),
                    'v' => out.extend_from_slice(message.payload().unwrap_or_default()),
                    'T' => {
                        let ms = message.timestamp().to_millis().unwrap_or(-1);
                        out.extend_from_slice(ms.to_string().as_bytes());
                    }
                    'h' => {
                        if let Some(headers) = message.headers() {
                            let pairs: Vec<String> = headers
                                .iter()
                                .map(|header| {
                                    let value = header
                                        .value
                                        .map(String::from_utf8_lossy)
                                        .unwrap_or_default();
                                    format!("{}={value}", header.key)
                                })
                                .collect();
                            out.extend_from_slice(pairs.join(",").as_bytes());
                        }
                    }
                    '%' => out.push(b'%'),
                    other => {
                        out.push(b'%');
                        out.extend_from_slice(other.to_string().as_bytes());
                    }
                }
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push(b'\n');
            }
            ('\\', Some('t')) => {
                chars.next();
                out.push(b'\t');
            }
            (c, _) => out.extend_from_slice(c.to_string().as_bytes()),
        }
    }
    out
}
