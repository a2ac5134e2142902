//! The `produce` workload: senders only. Figures come from the acknowledgements, and the
//! offsets the broker returned are checked against how far each partition's log grew.

use super::report::{Check, Report};
use super::{Run, Senders};

pub fn run(run: &Run) -> anyhow::Result<Report> {
    let (topic, made_up) = run.topic();
    let partitions = run.settings.ensure_topic(&topic, run.args.partitions)?;
    let before = run.settings.watermarks(&topic, partitions)?;
    let progress = run.progress_bar("produce");
    let senders = run.senders(&topic, None, Vec::new(), |_| {});
    progress.finish();
    let senders = senders?;
    let after = run.settings.watermarks(&topic, partitions)?;
    let produced = senders.recorder();
    let mut report = run.report(senders.measured_seconds(), &produced);
    report.with_latency("produce", &produced);
    if run.args.acks != "0" {
        report.checks.push(stored_check(&senders, &before, &after));
    }
    if let Some(error) = senders.first_error() {
        report.checks.push(Check::new(
            "deliveries",
            false,
            format!("first error: {error}"),
        ));
    }
    if made_up {
        run.clean_up(&[&topic]);
    }
    Ok(report)
}

/// Every acknowledged message, and nothing else, is in the log: per partition, the count of
/// offsets the broker acknowledged equals how far the log end moved. Holds when this run was
/// the only writer.
pub fn stored_check(senders: &Senders, before: &[(i64, i64)], after: &[(i64, i64)]) -> Check {
    let acked = senders.acked_by_partition();
    let mut stored_total = 0_i64;
    let mut mismatched = Vec::new();
    for (partition, ((_, end_before), (_, end_after))) in before.iter().zip(after).enumerate() {
        let stored = end_after - end_before;
        stored_total += stored;
        let acked_here = acked.get(partition).copied().unwrap_or(0);
        if i64::try_from(acked_here).ok() != Some(stored) {
            mismatched.push(format!(
                "partition {partition}: {acked_here} acked, {stored} stored"
            ));
        }
    }
    let acked_total = senders.acked();
    let detail = if mismatched.is_empty() {
        format!("{acked_total} acknowledged, {stored_total} stored")
    } else {
        let shown: Vec<&str> = mismatched.iter().take(5).map(String::as_str).collect();
        format!(
            "{acked_total} acknowledged, {stored_total} stored; {}",
            shown.join("; ")
        )
    };
    Check::new("stored", mismatched.is_empty(), detail)
}
