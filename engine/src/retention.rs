//! Which segments retention deletes, decided without I/O, following Kafka's
//! `UnifiedLog.deleteOldSegments`: whole segments, oldest first, by time then by size.

use crate::config::TopicConfig;

/// What retention needs to know of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentFacts {
    pub log_len: u64,
    /// The newest batch timestamp, negative when no batch carried one.
    pub max_timestamp_ms: i64,
    /// Wall-clock time of the segment's last write; stands in for a missing timestamp.
    pub last_modified_ms: i64,
    /// Every batch of the segment is durable (retention never deletes unacknowledged data).
    pub durable: bool,
}

/// How many of the oldest `segments` (oldest first, the active one last) retention deletes.
///
/// When the answer is all of them, the caller rolls a new, empty active segment first, as
/// Kafka does, so the partition keeps its next offset.
pub fn segments_to_delete(segments: &[SegmentFacts], config: &TopicConfig, now_ms: i64) -> usize {
    let by_time = deletable_prefix(segments, |segment| {
        config.retention_ms >= 0 && now_ms.saturating_sub(newest_ms(segment)) > config.retention_ms
    });
    let total: u64 = segments[by_time..]
        .iter()
        .map(|segment| segment.log_len)
        .sum();
    let Some(mut excess) = u64::try_from(config.retention_bytes)
        .ok()
        .and_then(|limit| total.checked_sub(limit))
    else {
        return by_time;
    };
    by_time
        + deletable_prefix(&segments[by_time..], |segment| {
            let breached = segment.log_len <= excess;
            if breached {
                excess -= segment.log_len;
            }
            breached
        })
}

/// The segment's age reference, as Kafka's `LogSegment.largestTimestamp`.
fn newest_ms(segment: &SegmentFacts) -> i64 {
    if segment.max_timestamp_ms >= 0 {
        segment.max_timestamp_ms
    } else {
        segment.last_modified_ms
    }
}

/// The length of the run of oldest segments that satisfy `predicate`, never counting an
/// empty last segment or one that is not yet durable.
fn deletable_prefix(
    segments: &[SegmentFacts],
    mut predicate: impl FnMut(&SegmentFacts) -> bool,
) -> usize {
    let last = segments.len().saturating_sub(1);
    segments
        .iter()
        .enumerate()
        .take_while(|(index, segment)| {
            let empty_active = *index == last && segment.log_len == 0;
            !empty_active && segment.durable && predicate(segment)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(log_len: u64, max_timestamp_ms: i64) -> SegmentFacts {
        SegmentFacts {
            log_len,
            max_timestamp_ms,
            last_modified_ms: 5_000,
            durable: true,
        }
    }

    fn check(segments: &[SegmentFacts], retention_ms: i64, retention_bytes: i64, expected: usize) {
        let mut config = TopicConfig::default();
        config
            .set("retention.ms", &retention_ms.to_string())
            .unwrap();
        config
            .set("retention.bytes", &retention_bytes.to_string())
            .unwrap();
        assert_eq!(
            segments_to_delete(segments, &config, 10_000),
            expected,
            "{segments:?}"
        );
    }

    #[test]
    fn time_retention_deletes_the_expired_prefix() {
        let segments = [
            segment(100, 1_000),
            segment(100, 8_000),
            segment(100, 2_000),
            segment(50, 9_000),
        ];
        check(&segments, 5_000, -1, 1);
        check(&segments, 500, -1, 4);
        check(&segments, -1, -1, 0);
        // A segment without timestamps ages from its last write.
        check(&[segment(100, -1), segment(100, 9_000)], 4_000, -1, 1);
    }

    #[test]
    fn size_retention_deletes_the_oldest_while_the_rest_exceeds_the_limit() {
        let segments = [
            segment(100, 9_000),
            segment(100, 9_000),
            segment(100, 9_000),
            segment(30, 9_000),
        ];
        // Kafka deletes while the excess still covers the whole oldest segment.
        check(&segments, -1, 230, 1);
        check(&segments, -1, 229, 1);
        check(&segments, -1, 130, 2);
        check(&segments, -1, 129, 2);
        check(&segments, -1, 330, 0);
        check(&segments, -1, 0, 4);
    }

    #[test]
    fn empty_active_and_undurable_segments_stay() {
        check(&[segment(100, 1), segment(0, -1)], 500, -1, 1);
        let mut pending = segment(100, 1);
        pending.durable = false;
        check(&[segment(100, 1), pending, segment(100, 1)], 500, -1, 1);
    }
}
