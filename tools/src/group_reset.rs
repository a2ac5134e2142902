//! `strand group reset-offsets`: moves a group's committed offsets to the earliest or
//! latest offset, the first offset at or after a time, a given offset, or shifted by N,
//! for every partition of the topics named (`--topic t` or `--topic t:0,2`). Like
//! kafka-consumer-groups.sh it prints the plan and changes nothing without `--execute`,
//! and targets are clamped to the partition's log start and end. The group must have no
//! members: a live group's consumers would commit over the reset (the broker refuses with
//! UNKNOWN_MEMBER_ID or REBALANCE_IN_PROGRESS, shown per partition).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::admin_client::{AdminClient, error_text};
use crate::topic::{offsets, partition_count};

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    group: String,
    /// TOPIC or TOPIC:P1,P2 (repeatable).
    #[arg(long = "topic", required = true, value_name = "TOPIC[:PARTITIONS]")]
    topics: Vec<String>,
    /// To each partition's log start.
    #[arg(long, group = "target")]
    to_earliest: bool,
    /// To each partition's log end.
    #[arg(long, group = "target")]
    to_latest: bool,
    /// To the first offset at or after a time: YYYY-MM-DDTHH:MM:SS[.mmm] (UTC) or
    /// milliseconds since the epoch.
    #[arg(long, group = "target", value_name = "TIME")]
    to_datetime: Option<String>,
    /// To this offset.
    #[arg(long, group = "target", value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// By N from the committed offset (negative moves back).
    #[arg(long, group = "target", value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Commit the new offsets (without it, only the plan is shown).
    #[arg(long)]
    execute: bool,
}

enum Target {
    Earliest,
    Latest,
    Time(i64),
    Offset(i64),
    Shift(i64),
}

impl ResetArgs {
    fn target(&self) -> anyhow::Result<Target> {
        Ok(if self.to_earliest {
            Target::Earliest
        } else if self.to_latest {
            Target::Latest
        } else if let Some(time) = &self.to_datetime {
            Target::Time(parse_time(time)?)
        } else if let Some(offset) = self.to_offset {
            Target::Offset(offset)
        } else if let Some(shift) = self.shift_by {
            Target::Shift(shift)
        } else {
            bail!(
                "say where to: --to-earliest, --to-latest, --to-datetime, --to-offset or --shift-by"
            )
        })
    }
}

pub fn run(client: &mut AdminClient, args: &ResetArgs) -> anyhow::Result<bool> {
    let target = args.target()?;
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for spec in &args.topics {
        let (topic, partitions) = match spec.split_once(':') {
            Some((topic, list)) => {
                let partitions = list
                    .split(',')
                    .map(|p| {
                        p.trim()
                            .parse::<i32>()
                            .with_context(|| format!("partition {p:?} in {spec:?}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                (topic.to_string(), partitions)
            }
            None => (spec.clone(), (0..partition_count(client, spec)?).collect()),
        };
        wanted.entry(topic).or_default().extend(partitions);
    }
    let committed = committed(client, &args.group)?;
    let mut plan: Vec<(String, i32, i64, i64)> = Vec::new();
    for (topic, partitions) in &wanted {
        let starts = offsets(client, topic, partitions, -2)?;
        let ends = offsets(client, topic, partitions, -1)?;
        let at_time = match target {
            Target::Time(ms) => Some(offsets(client, topic, partitions, ms)?),
            _ => None,
        };
        for (at, &partition) in partitions.iter().enumerate() {
            let (start, end) = (starts[at], ends[at]);
            if start < 0 || end < 0 {
                bail!("{topic}-{partition} has no offsets (is it a partition of the topic?)");
            }
            let current = committed.get(&(topic.clone(), partition)).copied();
            let wanted = match target {
                Target::Earliest => start,
                Target::Latest => end,
                // No record at or after the time: the log end, as Kafka resets.
                Target::Time(_) => at_time.as_ref().map_or(end, |found| match found[at] {
                    -1 => end,
                    offset => offset,
                }),
                Target::Offset(offset) => offset,
                Target::Shift(by) => current.unwrap_or(start).saturating_add(by),
            };
            let new = wanted.clamp(start, end);
            plan.push((topic.clone(), partition, current.unwrap_or(-1), new));
        }
    }
    println!(
        "{:<40} {:<24} {:>9} {:>14} {:>14}",
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"
    );
    for (topic, partition, current, new) in &plan {
        let current = if *current < 0 {
            "-".to_string()
        } else {
            current.to_string()
        };
        println!(
            "{:<40} {topic:<24} {partition:>9} {current:>14} {new:>14}",
            args.group
        );
    }
    if !args.execute {
        println!("\nA dry run: nothing was changed. Add --execute to commit these offsets.");
        return Ok(true);
    }
    commit(client, &args.group, &plan)
}

fn committed(
    client: &mut AdminClient,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(None);
    let response = client.call(&fetch, 6)?;
    if let Some(error) = error_text(response.error_code, None) {
        bail!("{group}: {error}");
    }
    let mut found = BTreeMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            if partition.committed_offset >= 0 {
                found.insert(
                    (topic.name.0.to_string(), partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    }
    Ok(found)
}

fn commit(
    client: &mut AdminClient,
    group: &str,
    plan: &[(String, i32, i64, i64)],
) -> anyhow::Result<bool> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (topic, partition, _, new) in plan {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*new)
                .with_committed_leader_epoch(-1),
        );
    }
    // Generation -1 and no member id: an admin's commit, accepted only for a group with
    // no members.
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = client.call(&request, 8)?;
    let mut ok = true;
    for topic in response.topics {
        for partition in topic.partitions {
            if let Some(error) = error_text(partition.error_code, None) {
                ok = false;
                eprintln!(
                    "{}-{}: {error}",
                    topic.name.0.as_str(),
                    partition.partition_index
                );
            }
        }
    }
    if ok {
        println!("\nCommitted.");
    }
    Ok(ok)
}

/// Milliseconds since the epoch of `text`: a number, or `YYYY-MM-DDTHH:MM:SS[.mmm][Z]` in
/// UTC.
fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || anyhow::anyhow!("{text:?} is not YYYY-MM-DDTHH:MM:SS[.mmm] (UTC) or milliseconds");
    let text = text.trim_end_matches('Z');
    let (date, time) = text.split_once('T').ok_or_else(bad)?;
    let mut date_parts = date.split('-').map(str::parse::<i64>);
    let (year, month, day) = match (date_parts.next(), date_parts.next(), date_parts.next()) {
        (Some(Ok(y)), Some(Ok(m)), Some(Ok(d)))
            if (1..=12).contains(&m) && (1..=31).contains(&d) =>
        {
            (y, m, d)
        }
        _ => return Err(bad()),
    };
    let (clock, millis) = match time.split_once('.') {
        Some((clock, fraction)) => {
            let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
            (clock, digits.parse::<i64>().map_err(|_| bad())?)
        }
        None => (time, 0),
    };
    let mut clock_parts = clock.split(':').map(str::parse::<i64>);
    let (hour, minute, second) = match (clock_parts.next(), clock_parts.next(), clock_parts.next())
    {
        (Some(Ok(h)), Some(Ok(m)), Some(Ok(s))) if h < 24 && m < 60 && s < 61 => (h, m, s),
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time("1970-01-01T00:00:00").unwrap(), 0);
        assert_eq!(
            parse_time("2024-02-29T12:30:15.250Z").unwrap(),
            1_709_209_815_250
        );
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert!(parse_time("yesterday").is_err());
    }
}
