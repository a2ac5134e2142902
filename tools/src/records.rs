//! `strand records delete TOPIC:PARTITION --before OFFSET`: Kafka's DeleteRecords, as
//! kafka-delete-records.sh does it: records below the offset are no longer readable and
//! the partition's log start (low watermark) moves there; `--before -1` (or `end`) means
//! the high watermark.

use anyhow::{Context, bail};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::{DeleteRecordsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::admin_client::{AdminClient, error_text};

#[derive(Debug, clap::Subcommand)]
pub enum RecordsCommand {
    /// Delete a partition's records below an offset.
    Delete {
        /// TOPIC:PARTITION.
        partition: String,
        /// The new log start; -1 or `end` for the high watermark.
        #[arg(long, allow_hyphen_values = true)]
        before: String,
    },
}

pub fn run(bootstrap: &str, command: RecordsCommand) -> anyhow::Result<bool> {
    let mut client = AdminClient::connect(bootstrap)?;
    match command {
        RecordsCommand::Delete { partition, before } => delete(&mut client, &partition, &before),
    }
}

fn delete(client: &mut AdminClient, spec: &str, before: &str) -> anyhow::Result<bool> {
    let Some((topic, partition)) = spec.rsplit_once(':') else {
        bail!("{spec:?} is not TOPIC:PARTITION");
    };
    let partition: i32 = partition
        .parse()
        .with_context(|| format!("partition {partition:?} in {spec:?}"))?;
    let offset: i64 = match before {
        "end" => -1,
        text => text
            .parse()
            .with_context(|| format!("--before {text:?} is not an offset"))?,
    };
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset),
                ]),
        ]);
    let response = client.call(&request, 2)?;
    let mut ok = true;
    println!(
        "{:<40} {:>9} {:>14} STATUS",
        "TOPIC", "PARTITION", "LOW-WATERMARK"
    );
    for topic in response.topics {
        for result in topic.partitions {
            let status = error_text(result.error_code, None);
            ok &= status.is_none();
            println!(
                "{:<40} {:>9} {:>14} {}",
                topic.name.0.as_str(),
                result.partition_index,
                result.low_watermark,
                status.unwrap_or_else(|| "OK".into())
            );
        }
    }
    Ok(ok)
}
