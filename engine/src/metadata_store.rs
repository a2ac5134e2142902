//! Persisting metadata: `metadata.bin` in the data directory, replaced atomically.
//!
//! The file is a 20-byte header (magic, format version, payload length, crc32c of the
//! payload) and an rkyv payload, validated with bytecheck before use. A new version is
//! written to `metadata.bin.tmp`, fsynced, renamed over the old file, and the directory
//! fsynced: a crash leaves the old version or the new one, never a mix.
//!
//! A topic's settings are stored as its overrides only (format version 2), so a topic
//! follows the broker's defaults for everything it did not set. Version 1 files stored
//! every value; on loading one, values equal to Kafka's defaults count as inherited.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::TopicConfig;
use crate::ids::{ShardId, TopicId};
use crate::metadata::{MetadataSnapshot, TopicMeta};

const FILE_NAME: &str = "metadata.bin";
const MAGIC: [u8; 8] = *b"STRNDMD\0";
const FORMAT_VERSION: u32 = 2;
/// Version 1 stored every setting's value, not only the overrides.
const FORMAT_VERSION_ALL_VALUES: u32 = 1;
const HEADER_LEN: usize = 20;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct MetadataImage {
    version: u64,
    next_topic_id: u32,
    topics: Vec<TopicRecord>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct TopicRecord {
    id: u32,
    uuid: [u8; 16],
    name: String,
    /// Settings set on the topic, as Kafka key/value strings, so adding a setting needs no
    /// format change.
    configs: Vec<ConfigRecord>,
    /// Owning shard of each partition.
    partitions: Vec<u16>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct ConfigRecord {
    key: String,
    value: String,
}

/// Why metadata could not be read or written.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("i/o error on {path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

/// The metadata file's path in `data_dir`.
pub fn metadata_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the persisted snapshot; an absent file is a new, empty broker.
///
/// Blocks: call it before starting executors or through the blocking pool.
/// Topics get `defaults` for every setting they did not set themselves.
pub fn load(data_dir: &Path, defaults: &TopicConfig) -> Result<MetadataSnapshot, MetadataError> {
    let path = metadata_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => {
            decode(&bytes, defaults).map_err(|reason| MetadataError::Damaged { path, reason })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(MetadataSnapshot::default())
        }
        Err(error) => Err(MetadataError::Io {
            path,
            detail: error.to_string(),
        }),
    }
}

/// Replaces the persisted snapshot atomically. Blocks, like [`load`].
pub fn store(data_dir: &Path, snapshot: &MetadataSnapshot) -> Result<(), MetadataError> {
    let path = metadata_path(data_dir);
    let temporary = path.with_extension("bin.tmp");
    let io = |path: &Path, error: std::io::Error| MetadataError::Io {
        path: path.to_path_buf(),
        detail: error.to_string(),
    };
    let bytes = encode(snapshot);
    let mut file = std::fs::File::create(&temporary).map_err(|error| io(&temporary, error))?;
    file.write_all(&bytes)
        .map_err(|error| io(&temporary, error))?;
    file.sync_all().map_err(|error| io(&temporary, error))?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(|error| io(&path, error))?;
    crate::directory::sync_parent(&path).map_err(|error| io(data_dir, error))
}

/// The file bytes of `snapshot`.
fn encode(snapshot: &MetadataSnapshot) -> Vec<u8> {
    let image = MetadataImage {
        version: snapshot.version(),
        next_topic_id: snapshot.next_topic_id(),
        topics: snapshot.topics().map(|topic| record_of(topic)).collect(),
    };
    let payload = rkyv::to_bytes::<rkyv::rancor::Error>(&image).expect("metadata image serializes");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("metadata below 4 GiB")
            .to_be_bytes(),
    );
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The snapshot in file `bytes`, or why they are not one.
fn decode(bytes: &[u8], defaults: &TopicConfig) -> Result<MetadataSnapshot, String> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or_else(|| format!("{} bytes, shorter than the header", bytes.len()))?;
    if header[..8] != MAGIC {
        return Err("not a Strand metadata file (bad magic)".into());
    }
    let version = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION && version != FORMAT_VERSION_ALL_VALUES {
        return Err(format!(
            "format version {version} is not supported (expected {FORMAT_VERSION})"
        ));
    }
    let len = usize::try_from(u32::from_be_bytes(
        header[12..16].try_into().expect("4 bytes"),
    ))
    .map_err(|_| "length overflow")?;
    let payload = bytes
        .get(HEADER_LEN..HEADER_LEN + len)
        .ok_or_else(|| format!("payload of {len} bytes is truncated"))?;
    let stored = u32::from_be_bytes(header[16..20].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(payload);
    if stored != computed {
        return Err(format!(
            "crc32c is {stored:#010x} but the payload hashes to {computed:#010x}"
        ));
    }
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    let image = rkyv::from_bytes::<MetadataImage, rkyv::rancor::Error>(&aligned)
        .map_err(|error| error.to_string())?;
    let topics = image
        .topics
        .into_iter()
        .map(|record| topic_of(record, defaults, version == FORMAT_VERSION_ALL_VALUES))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MetadataSnapshot::new(
        image.version,
        image.next_topic_id,
        topics,
    ))
}

fn record_of(topic: &TopicMeta) -> TopicRecord {
    TopicRecord {
        id: topic.id.value(),
        uuid: topic.uuid,
        name: topic.name.clone(),
        configs: topic
            .config
            .overrides()
            .into_iter()
            .map(|(key, value)| ConfigRecord {
                key: key.to_string(),
                value,
            })
            .collect(),
        partitions: topic.partitions.iter().map(|shard| shard.value()).collect(),
    }
}

fn topic_of(
    record: TopicRecord,
    defaults: &TopicConfig,
    all_values: bool,
) -> Result<TopicMeta, String> {
    let mut config = defaults.inherited();
    let kafka_defaults = TopicConfig::default();
    for entry in &record.configs {
        if all_values && kafka_defaults.get(&entry.key).as_ref() == Some(&entry.value) {
            continue;
        }
        config
            .set(&entry.key, &entry.value)
            .map_err(|error| format!("topic {}: {error}", record.name))?;
    }
    Ok(TopicMeta {
        id: TopicId::new(record.id),
        uuid: record.uuid,
        name: record.name,
        config,
        partitions: record.partitions.into_iter().map(ShardId::new).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetadataSnapshot {
        let mut config = TopicConfig::default();
        config.set("retention.ms", "1000").unwrap();
        let topic = TopicMeta {
            id: TopicId::new(7),
            uuid: [9; 16],
            name: "orders".into(),
            config,
            partitions: vec![ShardId::new(0), ShardId::new(1)],
        };
        MetadataSnapshot::default().with_topic(topic)
    }

    #[test]
    fn snapshots_survive_a_store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = TopicConfig::default();
        assert_eq!(
            load(dir.path(), &defaults).unwrap(),
            MetadataSnapshot::default()
        );
        store(dir.path(), &sample()).unwrap();
        assert_eq!(load(dir.path(), &defaults).unwrap(), sample());
        assert!(!dir.path().join("metadata.bin.tmp").exists());
    }

    #[test]
    fn topics_follow_the_broker_defaults_they_did_not_override() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), &sample()).unwrap();
        let mut defaults = TopicConfig::default();
        defaults.set("retention.ms", "7").unwrap();
        defaults.set("segment.ms", "60000").unwrap();
        let loaded = load(dir.path(), &defaults).unwrap();
        let config = &loaded.topic("orders").unwrap().config;
        assert_eq!(config.retention_ms, 1000, "the topic's own setting stays");
        assert_eq!(
            config.segment_ms, 60000,
            "the broker's default reaches the topic"
        );
        assert_eq!(config.overrides(), [("retention.ms", "1000".to_owned())]);
    }

    #[test]
    fn version_one_files_count_values_equal_to_kafkas_defaults_as_inherited() {
        let record = TopicRecord {
            id: 1,
            uuid: [1; 16],
            name: "old".into(),
            configs: vec![
                ConfigRecord {
                    key: "retention.ms".into(),
                    value: "604800000".into(),
                },
                ConfigRecord {
                    key: "segment.bytes".into(),
                    value: "1048576".into(),
                },
            ],
            partitions: vec![0],
        };
        let topic = topic_of(record, &TopicConfig::default(), true).unwrap();
        assert_eq!(
            topic.config.overrides(),
            [("segment.bytes", "1048576".to_owned())]
        );
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let bytes = encode(&sample());
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(
                decode(&damaged, &TopicConfig::default()).is_err(),
                "flip at byte {at} went unnoticed"
            );
        }
        let defaults = TopicConfig::default();
        assert!(decode(&bytes[..bytes.len() - 1], &defaults).is_err());
        assert_eq!(decode(&bytes, &defaults), Ok(sample()));
    }
}
