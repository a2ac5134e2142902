//! Cutting a partition's log back to an offset, on disk: what a chain member does with
//! entries a deposed head never committed (issue 5).
//!
//! The shard first lets every append become durable, then plans the cut
//! ([`PartitionLog::plan_cut`]), runs it here, and reopens the partition through recovery,
//! which rebuilds the cut segment's index, the writer's tail block and the idempotent
//! producers' state from what is left. The steps are ordered so a crash anywhere leaves a
//! log recovery reads as either the old one or the cut one: first the producer snapshot
//! and the index files of the segment that will end at the cut (so nothing vouches for
//! the old log), then that
//! segment's log is cut and synced, then the later segments go (recovery drops segments
//! that do not follow their predecessor), then the directory is synced.

use std::path::Path;

use crate::directory;
use crate::offset::Offset;
use crate::partition::{CutPlan, TruncateError};
use crate::segment::SegmentCursor;

/// Where in the kept segment's file the cut falls: the position of the batch starting at
/// `to`. Found while the partition is still open, so a refused cut changes nothing.
pub(crate) async fn locate(
    plan: &mut CutPlan,
    to: Offset,
    label: &str,
) -> Result<u64, TruncateError> {
    match plan.cursor.take() {
        None => Ok(0),
        Some((cursor, start)) => batch_position(cursor, start, to, label).await,
    }
}

/// Carries out `plan`, cutting `label`'s log at file `position` of its kept segment (see
/// [`locate`]), so the log ends at `to`.
pub(crate) async fn cut(
    plan: CutPlan,
    position: u64,
    to: Offset,
    label: &str,
) -> Result<(), TruncateError> {
    let io = |detail: String| TruncateError::Io {
        partition: label.to_owned(),
        detail,
    };
    // The producer snapshot may cover batches past the cut; recovery rebuilds it.
    let mut first = plan.keep_indexes;
    first.push(plan.producer_snapshot);
    directory::remove_files(first)
        .await
        .map_err(|error| io(format!("removing index and snapshot files: {error}")))?;
    directory::cut_file(&plan.keep_log, position)
        .await
        .map_err(|error| io(format!("cutting {}: {error}", plan.keep_log.display())))?;
    directory::remove_files(plan.delete)
        .await
        .map_err(|error| io(format!("removing later segments: {error}")))?;
    let dir = plan.keep_log.parent().unwrap_or(Path::new("."));
    directory::sync_dir(dir)
        .await
        .map_err(|error| io(format!("fsync of {}: {error}", dir.display())))?;
    tracing::info!(partition = label, %to, "log cut back");
    Ok(())
}

/// The file position of the batch starting at `to`, walking from a batch at `start`.
async fn batch_position(
    mut cursor: SegmentCursor,
    start: u64,
    to: Offset,
    label: &str,
) -> Result<u64, TruncateError> {
    let mut position = start;
    while let Some((header, range)) = cursor.next().await.map_err(|error| TruncateError::Io {
        partition: label.to_owned(),
        detail: format!("{error:?}"),
    })? {
        if header.base_offset == to.value() {
            return Ok(position);
        }
        if header.last_offset() >= to.value() {
            break;
        }
        position += u64::try_from(range.len()).expect("usize fits u64");
    }
    Err(TruncateError::NotABatchBoundary {
        partition: label.to_owned(),
        to: to.value(),
    })
}
