//! Swapping cleaned segments in for the ones they replace, so that a crash at any point
//! leaves either every old segment or every cleaned one (Kafka's `.cleaned` and `.swap`
//! files, with one manifest as the commit point).
//!
//! 1. The cleaner writes each group's new segment as `<base>.log.cleaned` with its
//!    `.index.cleaned` and `.timeindex.cleaned`, each fdatasync'd.
//! 2. It writes the manifest `clean-swap` (each group's base and end offset) atomically:
//!    from here on the pass is done, whatever happens.
//! 3. It completes the swap: removes the old segments inside each group (bases after the
//!    group's first), renames the cleaned index files over the first segment's, then the
//!    cleaned log over its log, fsyncs the directory and removes the manifest.
//!
//! Opening a partition runs [`recover`] first: with a manifest it completes step 3 (every
//! action in it can be repeated); without one it removes `.cleaned` files, the remains of
//! a pass that never reached its commit point.

use std::path::{Path, PathBuf};

use crate::index_file::IndexKind;
use crate::offset::Offset;
use crate::segment::{parse_segment_name, segment_path};

const MANIFEST: &str = "clean-swap";
const MAGIC: &[u8; 4] = b"SCSW";
const FORMAT_VERSION: u32 = 1;
/// The suffix of files a cleaning pass writes before its commit point.
pub const CLEANED_SUFFIX: &str = "cleaned";

/// One group of a pass: the cleaned segment at `base` replaces every segment in
/// `base..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapGroup {
    pub base: Offset,
    pub end: Offset,
}

/// The path a pass writes the cleaned form of `<base>.<extension>` to.
pub fn cleaned_path(dir: &Path, base: Offset, extension: &str) -> PathBuf {
    segment_path(dir, base, &format!("{extension}.{CLEANED_SUFFIX}"))
}

/// Makes the pass durable: from here on recovery completes it. Blocks on the thread pool.
pub async fn commit(dir: &Path, groups: &[SwapGroup]) -> std::io::Result<()> {
    crate::directory::write_atomic(&dir.join(MANIFEST), encode(groups)).await
}

/// Puts the cleaned segments in place of the old ones and removes the manifest.
pub async fn complete(dir: &Path, groups: &[SwapGroup]) -> std::io::Result<()> {
    let entries = crate::directory::list(dir).await?;
    let mut doomed = Vec::new();
    for entry in &entries {
        let Some((base, extension)) = parse_segment_name(&entry.name) else {
            continue;
        };
        let inside = groups
            .iter()
            .any(|group| base > group.base && base < group.end);
        let segment_file = matches!(extension, "log" | "index" | "timeindex");
        if inside && segment_file {
            doomed.push(entry.path.clone());
        }
    }
    crate::directory::remove_files(doomed).await?;
    let mut renames = Vec::new();
    for group in groups {
        // The log goes last: while its cleaned file exists, the swap of this group is
        // not done, and the first segment's index files are replaced again if need be.
        for extension in [
            IndexKind::Offset.extension(),
            IndexKind::Time.extension(),
            "log",
        ] {
            renames.push((
                cleaned_path(dir, group.base, extension),
                segment_path(dir, group.base, extension),
            ));
        }
    }
    crate::directory::rename_all(renames).await?;
    crate::directory::sync_dir(dir).await?;
    crate::directory::remove_files(vec![dir.join(MANIFEST)]).await?;
    crate::directory::sync_dir(dir).await
}

/// What [`recover`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwapRecovery {
    /// Groups of a committed pass whose swap was completed.
    pub completed: Vec<SwapGroup>,
    /// Files of a pass that had not committed, removed.
    pub discarded: usize,
}

/// Completes a committed pass or discards an unfinished one (see the module comment).
pub async fn recover(dir: &Path) -> Result<SwapRecovery, String> {
    let manifest = dir.join(MANIFEST);
    let mut recovery = SwapRecovery::default();
    let bytes = crate::directory::read_file(&manifest)
        .await
        .map_err(|error| format!("reading {}: {error}", manifest.display()))?;
    if let Some(bytes) = bytes {
        let groups = decode(&bytes).map_err(|reason| {
            format!(
                "{} is damaged ({reason}): cannot tell which segments a cleaning pass replaced",
                manifest.display()
            )
        })?;
        complete(dir, &groups)
            .await
            .map_err(|error| format!("completing a cleaning pass in {}: {error}", dir.display()))?;
        recovery.completed = groups;
    }
    let entries = crate::directory::list(dir)
        .await
        .map_err(|error| format!("listing {}: {error}", dir.display()))?;
    let leftovers: Vec<PathBuf> = entries
        .iter()
        .filter(|entry| {
            entry.name.ends_with(&format!(".{CLEANED_SUFFIX}"))
                || entry.name == format!("{MANIFEST}.tmp")
        })
        .map(|entry| entry.path.clone())
        .collect();
    recovery.discarded = leftovers.len();
    if !leftovers.is_empty() {
        crate::directory::remove_files(leftovers)
            .await
            .map_err(|error| {
                format!("removing an unfinished pass in {}: {error}", dir.display())
            })?;
    }
    Ok(recovery)
}

fn encode(groups: &[SwapGroup]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + groups.len() * 16 + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    let count = u32::try_from(groups.len()).expect("few groups per pass");
    out.extend_from_slice(&count.to_be_bytes());
    for group in groups {
        out.extend_from_slice(&group.base.value().to_be_bytes());
        out.extend_from_slice(&group.end.value().to_be_bytes());
    }
    out.extend_from_slice(&crc32c::crc32c(&out).to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Result<Vec<SwapGroup>, String> {
    let (body, crc) = bytes
        .split_last_chunk::<4>()
        .ok_or("shorter than a checksum")?;
    if crc32c::crc32c(body) != u32::from_be_bytes(*crc) {
        return Err("checksum mismatch".into());
    }
    if body.get(..4) != Some(MAGIC) || body.len() < 12 {
        return Err("bad magic".into());
    }
    let version = u32::from_be_bytes(body[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!("format version {version} is not supported"));
    }
    let count = usize::try_from(u32::from_be_bytes(body[8..12].try_into().expect("4 bytes")))
        .map_err(|_| "count overflows")?;
    let groups = &body[12..];
    if groups.len() != count.saturating_mul(16) {
        return Err(format!("{count} groups do not fill {} bytes", groups.len()));
    }
    groups
        .chunks_exact(16)
        .map(|group| {
            let read = |at: usize| i64::from_be_bytes(group[at..at + 8].try_into().expect("8"));
            match (Offset::new(read(0)), Offset::new(read(8))) {
                (Some(base), Some(end)) if base < end => Ok(SwapGroup { base, end }),
                _ => Err("a group's offsets are out of order".to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_damage_is_refused() {
        let groups = vec![
            SwapGroup {
                base: Offset::ZERO,
                end: Offset::new(100).unwrap(),
            },
            SwapGroup {
                base: Offset::new(100).unwrap(),
                end: Offset::new(250).unwrap(),
            },
        ];
        let bytes = encode(&groups);
        assert_eq!(decode(&bytes).unwrap(), groups);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(decode(&damaged).is_err(), "flip at {at}");
        }
    }
}
