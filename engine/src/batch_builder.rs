//! Builds uncompressed RecordBatch v2 bytes: for tools, benchmarks and tests that need
//! batches exactly as a Kafka producer would send them.

use crate::batch::{BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
use crate::varint::put_varlong;

/// Accumulates records and produces one batch with a correct crc32c.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: Vec<u8>,
    record_count: i32,
}

impl BatchBuilder {
    /// A builder whose records' timestamps are relative to `base_timestamp_ms`.
    pub fn new(base_timestamp_ms: i64) -> BatchBuilder {
        BatchBuilder {
            base_timestamp_ms,
            max_timestamp_ms: base_timestamp_ms,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
            record_count: 0,
        }
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn producer(&mut self, id: i64, epoch: i16, base_sequence: i32) -> &mut Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Adds a record stamped with the batch's base timestamp.
    pub fn record(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> &mut Self {
        self.record_at(self.base_timestamp_ms, key, value, headers)
    }

    /// Adds a record with its own timestamp.
    pub fn record_at(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> &mut Self {
        let mut body =
            Vec::with_capacity(16 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len));
        body.push(0); // record attributes: unused in v2
        put_varlong(&mut body, timestamp_ms - self.base_timestamp_ms);
        put_varlong(&mut body, i64::from(self.record_count));
        put_bytes(&mut body, key);
        put_bytes(&mut body, value);
        put_varlong(&mut body, len_i64(headers.len()));
        for (name, header_value) in headers {
            put_bytes(&mut body, Some(name.as_bytes()));
            put_bytes(&mut body, Some(header_value));
        }
        put_varlong(&mut self.records, len_i64(body.len()));
        self.records.extend_from_slice(&body);
        self.record_count += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        self
    }

    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// The batch bytes, with base offset 0 (the log assigns the real one).
    ///
    /// # Panics
    /// When no record was added: Kafka batches hold at least one.
    pub fn build(&self) -> Vec<u8> {
        assert!(self.record_count > 0, "a batch needs at least one record");
        let total = BATCH_HEADER_LEN + self.records.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&0i64.to_be_bytes());
        let batch_length = i32::try_from(total - LOG_OVERHEAD).expect("batch below 2 GiB");
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        out.extend_from_slice(&MAGIC_V2.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
        out.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression, CreateTime
        out.extend_from_slice(&(self.record_count - 1).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.record_count.to_be_bytes());
        out.extend_from_slice(&self.records);
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(buf, -1),
        Some(bytes) => {
            put_varlong(buf, len_i64(bytes.len()));
            buf.extend_from_slice(bytes);
        }
    }
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).expect("length fits in i64")
}
