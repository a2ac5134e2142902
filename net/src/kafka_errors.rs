//! The one place engine errors become Kafka error codes, so every API answers the same
//! failure with the same code.

use kafka_protocol::error::ResponseError;
use strand_engine::batch_conform::ConformError;
use strand_engine::producer_state::SequenceError;
use strand_engine::{AppendError, BatchError, ReadError, TopicError};
use strand_replication::binding::ProduceError;
use strand_replication::chain::AppendRefused;
use strand_replication::controller::TopicRefusal;

/// A Kafka error code with the message that explains it to a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaError {
    pub code: ResponseError,
    pub message: String,
}

impl KafkaError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> KafkaError {
        KafkaError {
            code,
            message: message.into(),
        }
    }

    /// The wire code.
    pub fn code(&self) -> i16 {
        self.code.code()
    }
}

impl From<BatchError> for KafkaError {
    fn from(error: BatchError) -> Self {
        let code = match error {
            BatchError::CrcMismatch { .. } => ResponseError::CorruptMessage,
            BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
            BatchError::UnsupportedMagic { .. } => ResponseError::UnsupportedForMessageFormat,
            _ => ResponseError::InvalidRecord,
        };
        KafkaError::new(code, error.to_string())
    }
}

impl From<ConformError> for KafkaError {
    fn from(error: ConformError) -> Self {
        let code = match &error {
            ConformError::MissingKey { .. } => ResponseError::InvalidRecord,
            ConformError::Timestamp { .. } => ResponseError::InvalidTimestamp,
            ConformError::Open(_) | ConformError::Records(_) => ResponseError::CorruptMessage,
            ConformError::Rebuilt(batch) => return KafkaError::from(batch.clone()),
            _ => ResponseError::InvalidRecord,
        };
        KafkaError::new(code, error.to_string())
    }
}

impl From<AppendError> for KafkaError {
    fn from(error: AppendError) -> Self {
        let code = match error {
            AppendError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
            AppendError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
            AppendError::Poisoned { .. } | AppendError::Offline { .. } => {
                ResponseError::KafkaStorageError
            }
            AppendError::OffsetOverflow { .. } => ResponseError::InvalidRecord,
            AppendError::Sequence { error, .. } => match error {
                SequenceError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
                SequenceError::Fenced { .. } => ResponseError::InvalidProducerEpoch,
            },
            // Retriable: the client refreshes metadata and tries again (elsewhere, later).
            AppendError::ShuttingDown
            | AppendError::CutInProgress { .. }
            | AppendError::NotAtLogEnd { .. } => ResponseError::NotLeaderOrFollower,
            _ => ResponseError::UnknownServerError,
        };
        KafkaError::new(code, error.to_string())
    }
}

impl From<ReadError> for KafkaError {
    fn from(error: ReadError) -> Self {
        let code = match error {
            ReadError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
            ReadError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            ReadError::Corrupt { .. } | ReadError::Io { .. } | ReadError::Offline { .. } => {
                ResponseError::KafkaStorageError
            }
            ReadError::ShuttingDown => ResponseError::NotLeaderOrFollower,
            _ => ResponseError::UnknownServerError,
        };
        KafkaError::new(code, error.to_string())
    }
}

impl From<TopicError> for KafkaError {
    fn from(error: TopicError) -> Self {
        let code = match error {
            TopicError::AlreadyExists { .. } => ResponseError::TopicAlreadyExists,
            TopicError::UnknownTopic { .. } => ResponseError::UnknownTopicOrPartition,
            TopicError::InvalidName { .. } => ResponseError::InvalidTopicException,
            TopicError::InvalidPartitions { .. } => ResponseError::InvalidPartitions,
            TopicError::InvalidConfig { .. } => ResponseError::InvalidConfig,
            TopicError::LimitReached { .. } => ResponseError::PolicyViolation,
            _ => ResponseError::UnknownServerError,
        };
        KafkaError::new(code, error.to_string())
    }
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl From<ProduceError> for KafkaError {
    fn from(error: ProduceError) -> Self {
        let code = match &error {
            ProduceError::Engine(engine) => return engine.clone().into(),
            ProduceError::Refused(AppendRefused::Backlog { .. }) => {
                ResponseError::NotEnoughReplicas
            }
            ProduceError::NoReplica(_) => ResponseError::LeaderNotAvailable,
            // Retriable: the client refreshes metadata and finds the chain's head.
            _ => ResponseError::NotLeaderOrFollower,
        };
        KafkaError::new(code, error.to_string())
    }
}

impl From<TopicRefusal> for KafkaError {
    fn from(refusal: TopicRefusal) -> Self {
        let code = match &refusal {
            TopicRefusal::NoController | TopicRefusal::Lost => ResponseError::NotController,
            TopicRefusal::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            TopicRefusal::TopicExists(_) => ResponseError::TopicAlreadyExists,
            TopicRefusal::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            TopicRefusal::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            TopicRefusal::Busy(_) => ResponseError::ThrottlingQuotaExceeded,
            _ => ResponseError::InvalidRequest,
        };
        KafkaError::new(code, refusal.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_kafka_codes() {
        let unknown = AppendError::UnknownPartition {
            partition: "t-9".into(),
        };
        assert_eq!(KafkaError::from(unknown).code(), 3);
        let range = ReadError::OffsetOutOfRange {
            partition: "t-0".into(),
            requested: 50,
            log_start: 0,
            high_watermark: 10,
        };
        let error = KafkaError::from(range);
        assert_eq!(error.code(), 1);
        assert!(error.message.contains("50"), "{}", error.message);
        let exists = TopicError::AlreadyExists { name: "t".into() };
        assert_eq!(KafkaError::from(exists).code(), 36);
        let crc = BatchError::CrcMismatch {
            stored: 1,
            computed: 2,
        };
        assert_eq!(KafkaError::from(crc).code(), 2);
    }
}
