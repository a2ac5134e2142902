//! Directory operations (list, create, rename, remove) for shard code. These syscalls
//! block, so they run on glommio's blocking thread pool, never on a shard's executor thread.

use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// One entry of a directory listing.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub is_dir: bool,
    pub len: u64,
    /// Last modification, in milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// Lists `dir` (entries whose names are not UTF-8 are skipped: Strand never creates them).
pub async fn list(dir: &Path) -> io::Result<Vec<Entry>> {
    let dir = dir.to_path_buf();
    blocking(move || list_now(&dir)).await
}

/// Lists `dir` on the calling thread: for startup code that runs before any executor.
pub fn list_now(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let metadata = entry.metadata()?;
        let modified_ms = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .and_then(|since| i64::try_from(since.as_millis()).ok())
            .unwrap_or(0);
        entries.push(Entry {
            name,
            path: entry.path(),
            is_dir: metadata.is_dir(),
            len: metadata.len(),
            modified_ms,
        });
    }
    Ok(entries)
}

/// Creates `dir` and its parents, then fsyncs its parent so the new entry is durable.
pub async fn create(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    blocking(move || {
        std::fs::create_dir_all(&dir)?;
        sync_parent(&dir)
    })
    .await
}

/// Renames `from` to `to` and fsyncs both parents.
pub async fn rename(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    blocking(move || {
        std::fs::rename(&from, &to)?;
        sync_parent(&to)?;
        sync_parent(&from)
    })
    .await
}

/// Removes the files at `paths`, ignoring those already gone.
pub async fn remove_files(paths: Vec<PathBuf>) -> io::Result<()> {
    blocking(move || {
        for path in &paths {
            match std::fs::remove_file(path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    })
    .await
}

/// Replaces the file at `path` with `bytes` atomically: written to `<path>.tmp`, fsynced,
/// renamed over it, and the directory fsynced. A crash leaves the old file or the new one.
pub async fn write_atomic(path: &Path, bytes: Vec<u8>) -> io::Result<()> {
    let path = path.to_path_buf();
    blocking(move || write_atomic_now(&path, &bytes)).await
}

/// [`write_atomic`] on the calling thread.
pub fn write_atomic_now(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    sync_parent(path)
}

/// Renames each `(from, to)` in order, replacing `to` when it exists; a `from` already
/// gone is skipped (a rename a crash interrupted the completion of). Does not sync.
pub async fn rename_all(pairs: Vec<(PathBuf, PathBuf)>) -> io::Result<()> {
    blocking(move || {
        for (from, to) in &pairs {
            match std::fs::rename(from, to) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    })
    .await
}

/// Cuts the file at `path` to `len` bytes and syncs it.
pub async fn cut_file(path: &Path, len: u64) -> io::Result<()> {
    let path = path.to_path_buf();
    blocking(move || {
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(len)?;
        file.sync_all()
    })
    .await
}

/// fsyncs the directory `dir`, so entries removed from it stay removed.
pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    blocking(move || std::fs::File::open(&dir)?.sync_all()).await
}

/// Removes `dir` and everything in it.
pub async fn remove_tree(dir: &Path) -> io::Result<()> {
    let dir = dir.to_path_buf();
    blocking(move || match std::fs::remove_dir_all(&dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    })
    .await
}

/// Reads a whole (small) file, or `None` when it does not exist.
pub async fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let path = path.to_path_buf();
    blocking(move || match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    })
    .await
}

/// fsyncs the directory holding `path`.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    glommio::executor().spawn_blocking(work).await
}
