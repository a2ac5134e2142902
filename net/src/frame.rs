//! Kafka framing: a 4-byte big-endian length, then that many bytes of request.
//!
//! The length is checked against the configured maximum before anything is allocated. The
//! body buffer reserves the whole frame at once (a large reservation is address space, not
//! memory, until written) and is filled, zeroed just ahead of the bytes, as they arrive: a
//! client that claims a large frame and sends nothing costs no resident memory, and a frame
//! that does arrive is never moved by a regrowing buffer (realloc copies were 6% of a
//! durable-produce broker's CPU).

use std::time::Duration;

use futures::AsyncRead;
use futures::AsyncReadExt;

use crate::timeout::within;

/// Bytes read into a body buffer before it is first grown.
const FIRST_READ_BYTES: usize = 64 << 10;

/// Why a connection stops reading frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the client closed the connection")]
    Closed,
    #[error("the client sent nothing for {0:?}")]
    Idle(Duration),
    #[error("a frame of {len} bytes was not complete after {timeout:?}")]
    Slow { len: usize, timeout: Duration },
    #[error("frame length {len} is negative")]
    NegativeLength { len: i32 },
    #[error("frame of {len} bytes exceeds the maximum of {max} (socket.request.max.bytes)")]
    TooLarge { len: usize, max: usize },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the next frame's length, waiting at most `idle` for its first byte... and the
/// rest. `Err(Closed)` at a clean end of stream between frames.
pub async fn read_length<R: AsyncRead + Unpin>(
    reader: &mut R,
    idle: Duration,
    max: usize,
) -> Result<usize, FrameError> {
    let mut prefix = [0u8; 4];
    let read = within(idle, read_full(reader, &mut prefix)).await;
    match read {
        None => Err(FrameError::Idle(idle)),
        Some(Ok(0)) => Err(FrameError::Closed),
        Some(Ok(4)) => {
            let len = i32::from_be_bytes(prefix);
            let len = usize::try_from(len).map_err(|_| FrameError::NegativeLength { len })?;
            if len > max {
                return Err(FrameError::TooLarge { len, max });
            }
            Ok(len)
        }
        Some(Ok(_)) => Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        Some(Err(error)) => Err(FrameError::Io(error)),
    }
}

/// Reads a body of `len` bytes within `timeout`.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
    timeout: Duration,
) -> Result<Vec<u8>, FrameError> {
    let body = within(timeout, async {
        let mut body = Vec::with_capacity(len);
        while body.len() < len {
            let filled = body.len();
            let target = len.min(filled.saturating_mul(2).max(FIRST_READ_BYTES));
            body.resize(target, 0);
            let got = read_full(reader, &mut body[filled..]).await?;
            if got < target - filled {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
        }
        Ok(body)
    })
    .await;
    match body {
        None => Err(FrameError::Slow { len, timeout }),
        Some(result) => result.map_err(FrameError::Io),
    }
}

/// Fills `buf` unless the stream ends first; returns the bytes read.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn run<T>(future: impl Future<Output = T>) -> T {
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .make()
            .unwrap()
            .run(future)
    }

    #[test]
    fn a_frame_is_read_whole() {
        let mut input: &[u8] = &[0, 0, 0, 3, 7, 8, 9];
        let body = run(async move {
            let len = read_length(&mut input, Duration::from_secs(1), 100)
                .await
                .unwrap();
            read_body(&mut input, len, Duration::from_secs(1))
                .await
                .unwrap()
        });
        assert_eq!(body, vec![7, 8, 9]);
    }

    #[test]
    fn a_large_frame_fills_one_buffer_of_its_length() {
        let len = 100_000; // past the first read, short of a doubling
        let sent: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let mut input: &[u8] = &sent;
        let body = run(async move {
            read_body(&mut input, len, Duration::from_secs(1))
                .await
                .unwrap()
        });
        assert_eq!(body, sent);
        // A buffer grown by doubling would have ended with 128 KiB of capacity, after
        // moving what it held on every growth.
        assert_eq!(body.capacity(), len);
    }

    #[test]
    fn lengths_past_the_maximum_or_negative_are_refused() {
        let too_large = run(async {
            let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
            read_length(&mut input, Duration::from_secs(1), 100).await
        });
        assert!(matches!(
            too_large,
            Err(FrameError::TooLarge {
                len: 0x7fff_ffff,
                max: 100
            })
        ));
        let negative = run(async {
            let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
            read_length(&mut input, Duration::from_secs(1), 100).await
        });
        assert!(matches!(
            negative,
            Err(FrameError::NegativeLength { len: -2 })
        ));
    }

    #[test]
    fn a_frame_cut_short_is_an_error_and_a_clean_end_is_closed() {
        let cut = run(async {
            let mut input: &[u8] = &[1, 2];
            read_body(&mut input, 3, Duration::from_secs(1)).await
        });
        assert!(matches!(cut, Err(FrameError::Io(_))));
        let closed = run(async {
            let mut input: &[u8] = &[];
            read_length(&mut input, Duration::from_secs(1), 100).await
        });
        assert!(matches!(closed, Err(FrameError::Closed)));
    }
}
