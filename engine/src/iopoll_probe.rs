//! Settling glommio's io_uring IOPOLL detection before a shard opens any segment.
//!
//! glommio decides, per executor thread and block device, whether reads can use the
//! polled (IOPOLL) ring by reading one block at offset 0 of the first DMA file opened on
//! that device. If that file is empty the kernel answers the read with 0 bytes and no
//! error, glommio caches "polling works", and every later read on a device without poll
//! queues fails with EOPNOTSUPP. Fresh partitions open empty files first, so each shard
//! opens a one-block probe file in the data directory before anything else, and the
//! answer glommio caches is the true one.

use std::path::Path;

use glommio::io::DmaFile;

/// Opens (and removes) a one-block file in `data_dir` so glommio probes with real data.
pub async fn settle(data_dir: &Path, shard_index: usize) -> std::io::Result<()> {
    let path = data_dir.join(format!(".iopoll-probe-{shard_index}"));
    let written = path.clone();
    glommio::executor()
        .spawn_blocking(move || std::fs::write(&written, [0x5a; 4096]))
        .await?;
    let file = DmaFile::open(&path).await?;
    file.close().await?;
    crate::directory::remove_files(vec![path]).await
}
