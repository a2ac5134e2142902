//! Where things live in the data directory:
//!
//! ```text
//! <data-dir>/.lock                    flock'd by the running broker (shard_set)
//! <data-dir>/metadata.bin             topics, settings, placement (metadata_store)
//! <data-dir>/clean-shutdown           present only between a clean stop and the next start
//! <data-dir>/partitions/<topic>-<index>~<topic id>/
//!     <base offset>.log .index .timeindex
//! <data-dir>/trash/                   directories of deleted topics, removed in the background
//! ```
//!
//! The topic id in a partition directory's name keeps a deleted topic's data from ever
//! being mistaken for a new topic of the same name.

use std::io;
use std::path::{Path, PathBuf};

use crate::directory;
use crate::metadata::{MetadataSnapshot, TopicMeta, partition_label};

const PARTITIONS: &str = "partitions";
const TRASH: &str = "trash";
const CLEAN_SHUTDOWN: &str = "clean-shutdown";

/// The directory of partition `index` of `topic`.
pub fn partition_dir(data_dir: &Path, topic: &TopicMeta, index: u32) -> PathBuf {
    data_dir.join(PARTITIONS).join(format!(
        "{}~{}",
        partition_label(&topic.name, index),
        topic.id
    ))
}

/// Where a deleted partition's directory goes before it is removed.
pub fn trash_dir_for(data_dir: &Path, partition_dir: &Path) -> PathBuf {
    let name = partition_dir
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    data_dir.join(TRASH).join(name)
}

/// Prepares the data directory for a start, on the calling thread (before executors run):
/// creates missing folders, empties the trash, moves partition directories that no topic
/// owns to the trash, and consumes the clean-shutdown marker. Returns whether the previous
/// run shut down cleanly.
pub fn prepare(data_dir: &Path, snapshot: &MetadataSnapshot) -> io::Result<bool> {
    std::fs::create_dir_all(data_dir.join(PARTITIONS))?;
    let trash = data_dir.join(TRASH);
    if trash.exists() {
        std::fs::remove_dir_all(&trash)?;
    }
    std::fs::create_dir_all(&trash)?;
    let known: std::collections::HashSet<PathBuf> = snapshot
        .topics()
        .flat_map(|topic| {
            (0..topic.partition_count()).map(|index| partition_dir(data_dir, topic, index))
        })
        .collect();
    for entry in directory::list_now(&data_dir.join(PARTITIONS))? {
        if entry.is_dir && !known.contains(&entry.path) {
            tracing::info!(dir = %entry.path.display(), "removing the directory of a deleted partition");
            std::fs::remove_dir_all(&entry.path)?;
        }
    }
    let marker = data_dir.join(CLEAN_SHUTDOWN);
    let clean = marker.exists();
    if clean {
        std::fs::remove_file(&marker)?;
        directory::sync_parent(&marker)?;
    }
    Ok(clean)
}

/// Records that every shard closed cleanly, so the next start trusts saved indexes.
pub fn mark_clean_shutdown(data_dir: &Path) -> io::Result<()> {
    let marker = data_dir.join(CLEAN_SHUTDOWN);
    std::fs::File::create(&marker)?.sync_all()?;
    directory::sync_parent(&marker)
}
