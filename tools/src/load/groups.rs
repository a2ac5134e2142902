//! The `e2e`, `pubsub` and `queue` workloads: senders and consumer groups at once. Every
//! group must receive every acknowledged message exactly once; `e2e` and `queue` have one
//! group (of one member, or of --consumers sharing the partitions), `pubsub` has --groups.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::receiver::{self, Group, Received};
use super::report::{Check, Report};
use super::stats::Recorder;
use super::{DRAIN_TIMEOUT, Run, Workload, drain, produce};

pub fn run(run: &Run) -> anyhow::Result<Report> {
    let (topic, made_up) = run.topic();
    let partitions = run.settings.ensure_topic(&topic, run.args.partitions)?;
    let group_count = if run.args.workload == Workload::Pubsub {
        run.args.groups
    } else {
        1
    };
    let members = run.consumers() as usize;
    let groups: Vec<Arc<Group>> = (0..group_count)
        .map(|index| {
            Arc::new(Group::new(
                format!("strand-load-{:08x}-{index}", run.id),
                members,
            ))
        })
        .collect();
    let mut threads = Vec::new();
    for group in &groups {
        let config = run.settings.consumer(&group.name);
        for member in 0..members {
            let consumer = receiver::member(&config, group, member, &topic)?;
            let group = Arc::clone(group);
            let progress = Arc::clone(&run.progress);
            let id = run.id;
            threads.push(std::thread::spawn(move || {
                receiver::receive(&consumer, &group, id, &progress)
            }));
        }
    }
    let outcome = measure(run, &topic, partitions, &groups);
    for group in &groups {
        group.stop.store(true, Ordering::Relaxed);
    }
    let mut received = Vec::new();
    for thread in threads {
        received.push(
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a consumer thread panicked"))?,
        );
    }
    if made_up {
        run.clean_up(&[&topic]);
    }
    let (senders, checks, finished) = outcome?;
    let mut delivered = Recorder::new();
    for member in &received {
        delivered.merge(&member.recorder);
    }
    let seconds = finished
        .saturating_duration_since(senders.schedule.measure_from)
        .as_secs_f64();
    let mut report = run.report(seconds, &delivered);
    report.with_latency("end_to_end", &delivered);
    report.with_latency("produce", &senders.recorder());
    report.checks = checks;
    if let Some(error) = senders.first_error() {
        report.checks.push(Check::new(
            "deliveries",
            false,
            format!("first error: {error}"),
        ));
    }
    if let Some(error) = received
        .iter()
        .find_map(|r: &Received| r.first_error.as_ref())
    {
        report.checks.push(Check::new(
            "consumers",
            false,
            format!("first error: {error}"),
        ));
    }
    Ok(report)
}

/// Waits for the groups to hold every partition, sends, and waits for every group to receive
/// what was acknowledged. Returns the senders, the checks and when the last group finished.
fn measure(
    run: &Run,
    topic: &str,
    partitions: i32,
    groups: &[Arc<Group>],
) -> anyhow::Result<(super::Senders, Vec<Check>, Instant)> {
    for group in groups {
        group.await_assignment(topic, partitions)?;
    }
    let before = run.settings.watermarks(topic, partitions)?;
    let label = serde_json::to_value(run.args.workload)?;
    let progress = run.progress_bar(label.as_str().unwrap_or("load"));
    let senders = run.senders(topic, None, Vec::new(), |schedule| {
        for group in groups {
            let _ = group.schedule.set(*schedule);
        }
    });
    let senders = match senders {
        Ok(senders) => senders,
        Err(error) => {
            progress.finish();
            return Err(error);
        }
    };
    let acked = senders.acked();
    let drained_by = Instant::now() + DRAIN_TIMEOUT;
    let mut finished = Instant::now();
    for group in groups {
        drain(|| group.distinct(), acked, drained_by);
        finished = Instant::now();
    }
    progress.finish();
    let after = run.settings.watermarks(topic, partitions)?;
    let mut checks = vec![produce::stored_check(&senders, &before, &after)];
    for group in groups {
        let distinct = group.distinct();
        let duplicates = group.duplicates();
        checks.push(Check::new(
            &format!("{} received all", group.name),
            distinct >= acked,
            format!("{distinct} of {acked} acknowledged messages"),
        ));
        checks.push(Check::new(
            &format!("{} received once", group.name),
            duplicates == 0,
            format!("{duplicates} delivered more than once"),
        ));
    }
    Ok((senders, checks, finished))
}
