//! Bringing a partition's idempotent-producer state back when it opens: the last snapshot,
//! then every batch stored above the offset it covers, read back from the log.

use std::path::PathBuf;

use futures::FutureExt;
use futures::future::LocalBoxFuture;

use crate::batch::{BATCH_HEADER_LEN, BatchHeader};
use crate::offset::Offset;
use crate::partition::{PartitionLog, ReadError, ReadStart};
use crate::producer_state::{self, ProducerStates};
use crate::segment::read_batches;

/// Bytes read at a time while replaying.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// Restores `log`'s producer state; returns the offset the loaded snapshot covered (the
/// log start when there was none).
pub(crate) async fn restore(log: &mut PartitionLog) -> Result<Offset, ReadError> {
    let offsets = log.offsets();
    // Every durable batch counts, committed or not: the state must match the log.
    let durable_end = log.durable_end();
    let path = producer_state::snapshot_path(log.dir());
    let mut from = offsets.log_start;
    match crate::directory::read_file(&path).await {
        Ok(Some(bytes)) => match ProducerStates::decode(&bytes) {
            Ok((states, covered)) if covered <= durable_end => {
                *log.producers_mut() = states;
                from = covered.max(offsets.log_start);
            }
            Ok((_, covered)) => tracing::warn!(
                partition = log.label(),
                %covered,
                "producer snapshot is ahead of the log; rebuilding it from the log"
            ),
            Err(reason) => tracing::warn!(
                partition = log.label(),
                %reason,
                "unreadable producer snapshot; rebuilding it from the log"
            ),
        },
        Ok(None) => {}
        Err(error) => tracing::warn!(
            partition = log.label(),
            %error,
            "cannot read the producer snapshot; rebuilding it from the log"
        ),
    }
    let covered = from;
    while from < durable_end {
        let ReadStart::Disk { cursor, path } =
            log.plan_read(from, REPLAY_READ_BYTES, durable_end)?
        else {
            break;
        };
        let bytes = read_batches(cursor, from, durable_end, REPLAY_READ_BYTES)
            .await
            .map_err(|error| ReadError::from_segment(log.label().to_string(), path, error))?;
        let before = from;
        let mut rest = bytes.as_slice();
        while rest.len() >= BATCH_HEADER_LEN {
            let Ok(header) = BatchHeader::parse(rest) else {
                break;
            };
            let (Some(base), Some(last)) = (
                Offset::new(header.base_offset),
                Offset::new(header.last_offset()),
            ) else {
                break;
            };
            if last >= from {
                log.producers_mut().record(&header, base, last);
                from = last.plus(1);
            }
            rest = rest.get(header.total_len()..).unwrap_or_default();
        }
        if from == before {
            break;
        }
    }
    Ok(covered)
}

/// A job writing `bytes` as the snapshot of the partition in `dir`.
pub(crate) fn store_job(dir: PathBuf, bytes: Vec<u8>) -> LocalBoxFuture<'static, ()> {
    async move {
        let stored = glommio::executor()
            .spawn_blocking({
                let dir = dir.clone();
                move || producer_state::store_snapshot(&dir, &bytes)
            })
            .await;
        if let Err(error) = stored {
            tracing::warn!(dir = %dir.display(), %error, "could not save a producer snapshot");
        }
    }
    .boxed_local()
}
