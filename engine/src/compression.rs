//! The record-batch codecs Kafka defines: gzip, snappy, lz4 and zstd, each as Kafka's own
//! clients write it, so a batch the broker (re)compresses reads back in every client.
//!
//! - gzip: a gzip member (RFC 1952).
//! - snappy: the xerial framing the Java client writes (a 16-byte magic header, then
//!   length-prefixed raw snappy blocks of at most 32 KiB); raw snappy, which some clients
//!   send, is read too, as Java's `SnappyInputStream` does.
//! - lz4: the LZ4 frame format with independent blocks (Kafka's `Lz4BlockOutputStream`).
//! - zstd: a zstd frame.
//!
//! Decompression is bounded: a claim of more than `len_max` bytes is refused before it is
//! produced, so a small compressed batch cannot make the broker allocate without limit.

use std::io::{Read, Write};

use crate::batch::Compression;

/// Java's `SnappyOutputStream` header: magic, version 1, compatible version 1.
const SNAPPY_XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Java's default block size for xerial-framed snappy.
const SNAPPY_BLOCK_BYTES: usize = 32 << 10;

/// Why bytes could not be (de)compressed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{codec:?} data does not decompress: {detail}")]
    Corrupt { codec: Compression, detail: String },
    #[error("{codec:?} data decompresses to more than {len_max} bytes")]
    TooLarge { codec: Compression, len_max: usize },
    #[error("{codec:?} compression failed: {detail}")]
    Compress { codec: Compression, detail: String },
}

/// Decompresses `data`, refusing to produce more than `len_max` bytes.
pub fn decompress(codec: Compression, data: &[u8], len_max: usize) -> Result<Vec<u8>, CodecError> {
    let corrupt = |detail: String| CodecError::Corrupt { codec, detail };
    match codec {
        Compression::None => bounded(codec, data.len(), len_max).map(|()| data.to_vec()),
        Compression::Gzip => read_bounded(codec, flate2::read::GzDecoder::new(data), len_max),
        Compression::Snappy => snappy_decompress(data, len_max),
        Compression::Lz4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(data), len_max),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data)
                .map_err(|error| corrupt(error.to_string()))?;
            read_bounded(codec, decoder, len_max)
        }
    }
}

/// Compresses `data` with `codec` at its default level, as Kafka's clients would.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    compress_at(codec, data, Level::default())
}

/// The levels of the codecs that have them (the topic's `compression.gzip.level` and
/// `compression.zstd.level`); gzip's -1 is its default, 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub gzip: i32,
    pub zstd: i32,
}

impl Default for Level {
    fn default() -> Self {
        Level {
            gzip: -1,
            zstd: zstd::DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

/// Compresses `data` with `codec` at `level`.
pub fn compress_at(codec: Compression, data: &[u8], level: Level) -> Result<Vec<u8>, CodecError> {
    let failed = |detail: String| CodecError::Compress { codec, detail };
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2),
                u32::try_from(level.gzip).map_or_else(
                    |_| flate2::Compression::default(),
                    |level| flate2::Compression::new(level.min(9)),
                ),
            );
            encoder
                .write_all(data)
                .map_err(|error| failed(error.to_string()))?;
            encoder.finish().map_err(|error| failed(error.to_string()))
        }
        Compression::Snappy => snappy_compress(data),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .block_size(lz4_flex::frame::BlockSize::Max64KB);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(
                info,
                Vec::with_capacity(data.len() / 2),
            );
            encoder
                .write_all(data)
                .map_err(|error| failed(error.to_string()))?;
            encoder.finish().map_err(|error| failed(error.to_string()))
        }
        Compression::Zstd => {
            zstd::bulk::compress(data, level.zstd).map_err(|error| failed(error.to_string()))
        }
    }
}

fn bounded(codec: Compression, len: usize, len_max: usize) -> Result<(), CodecError> {
    if len > len_max {
        return Err(CodecError::TooLarge { codec, len_max });
    }
    Ok(())
}

/// Reads a decoder to its end, stopping one byte past `len_max`.
fn read_bounded(
    codec: Compression,
    decoder: impl Read,
    len_max: usize,
) -> Result<Vec<u8>, CodecError> {
    let limit = u64::try_from(len_max).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    decoder
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|error| CodecError::Corrupt {
            codec,
            detail: error.to_string(),
        })?;
    bounded(codec, out.len(), len_max)?;
    Ok(out)
}

fn snappy_decompress(data: &[u8], len_max: usize) -> Result<Vec<u8>, CodecError> {
    let codec = Compression::Snappy;
    let corrupt = |detail: String| CodecError::Corrupt { codec, detail };
    let Some(mut rest) = data.strip_prefix(SNAPPY_XERIAL_MAGIC) else {
        let len = snap::raw::decompress_len(data).map_err(|error| corrupt(error.to_string()))?;
        bounded(codec, len, len_max)?;
        return snap::raw::Decoder::new()
            .decompress_vec(data)
            .map_err(|error| corrupt(error.to_string()));
    };
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("a block length is cut short".into()))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        let block = tail
            .get(..len)
            .ok_or_else(|| corrupt(format!("a block of {len} bytes runs past the data")))?;
        rest = &tail[len..];
        let block_len =
            snap::raw::decompress_len(block).map_err(|error| corrupt(error.to_string()))?;
        bounded(codec, out.len().saturating_add(block_len), len_max)?;
        let start = out.len();
        out.resize(start + block_len, 0);
        decoder
            .decompress(block, &mut out[start..])
            .map_err(|error| corrupt(error.to_string()))?;
    }
    Ok(out)
}

fn snappy_compress(data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let failed = |detail: String| CodecError::Compress {
        codec: Compression::Snappy,
        detail,
    };
    let mut out = Vec::with_capacity(SNAPPY_XERIAL_MAGIC.len() + data.len() / 2);
    out.extend_from_slice(SNAPPY_XERIAL_MAGIC);
    let mut encoder = snap::raw::Encoder::new();
    for block in data.chunks(SNAPPY_BLOCK_BYTES) {
        let compressed = encoder
            .compress_vec(block)
            .map_err(|error| failed(error.to_string()))?;
        let len = u32::try_from(compressed.len()).map_err(|error| failed(error.to_string()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_and_zstd_follow_the_topics_levels() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| ((i * 7 % 251) ^ (i / 97)).to_le_bytes()[0])
            .collect();
        for codec in [Compression::Gzip, Compression::Zstd] {
            let fast = compress_at(codec, &data, Level { gzip: 1, zstd: 1 }).unwrap();
            let small = compress_at(codec, &data, Level { gzip: 9, zstd: 19 }).unwrap();
            assert_ne!(fast, small, "{codec:?}: the level changes the output");
            for bytes in [fast, small] {
                assert_eq!(decompress(codec, &bytes, 1 << 20).unwrap(), data);
            }
        }
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|at| u8::try_from(at % 251).unwrap()).collect()
    }

    #[test]
    fn every_codec_round_trips_small_and_multi_block_data() {
        for codec in CODECS {
            for len in [0, 1, 100, 100_000] {
                let data = sample(len);
                let packed = compress(codec, &data).unwrap();
                assert_eq!(
                    decompress(codec, &packed, len).unwrap(),
                    data,
                    "{codec:?} {len}"
                );
            }
        }
    }

    #[test]
    fn decompression_stops_at_its_bound() {
        for codec in CODECS {
            let packed = compress(codec, &vec![0; 10_000]).unwrap();
            assert_eq!(
                decompress(codec, &packed, 9_999),
                Err(CodecError::TooLarge {
                    codec,
                    len_max: 9_999
                }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn raw_snappy_is_read_too() {
        let data = sample(5_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw, 5_000).unwrap(), data);
    }

    #[test]
    fn garbage_is_refused_with_the_codec_named() {
        for codec in &CODECS[1..] {
            let error = decompress(*codec, b"definitely not compressed", 1 << 20).unwrap_err();
            assert!(
                matches!(error, CodecError::Corrupt { codec: named, .. } if named == *codec),
                "{error}"
            );
        }
    }
}
