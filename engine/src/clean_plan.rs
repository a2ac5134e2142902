//! Which compacted partition the cleaner takes next, how much of it, and how its segments
//! are grouped into cleaned ones, decided without I/O (Kafka's `LogCleanerManager` and
//! `Cleaner.groupSegmentsBySize`).
//!
//! A partition's log splits at its cleaner checkpoint (the first dirty offset) into a clean
//! head, already compacted, and a dirty tail. The cleanable part of the tail ends at the
//! first uncleanable offset: the active segment (never cleaned), the high watermark (what
//! is not committed may still be cut), and with `min.compaction.lag.ms` the first segment
//! holding a record younger than the lag; rounded down to a segment start. A partition is
//! cleanable when its dirty ratio (cleanable bytes over clean plus cleanable bytes) is
//! above `min.cleanable.dirty.ratio`, when a dirty record is older than
//! `max.compaction.lag.ms`, or when a delete horizon it holds has passed.

use crate::offset::Offset;

/// What the plan needs to know of one segment (oldest first, the active one last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base: Offset,
    /// The offset after the segment.
    pub next: Offset,
    pub log_len: u64,
    /// The newest batch timestamp, negative when no batch carried one.
    pub max_timestamp_ms: i64,
    /// The first batch's timestamp, when known (segments loaded after a restart do not
    /// know it; their newest timestamp stands in for it).
    pub first_timestamp_ms: Option<i64>,
}

/// The settings and state the plan follows for one partition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanerView {
    /// The cleaner checkpoint: where the dirty tail starts.
    pub first_dirty: Offset,
    /// What consumers may read up to (committed and durable).
    pub high_watermark: Offset,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    /// The earliest delete horizon a cleaned batch carries, if any.
    pub next_horizon_ms: Option<i64>,
    pub now_ms: i64,
}

/// A partition worth cleaning, and how much of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cleanable {
    /// Where indexing keys starts.
    pub first_dirty: Offset,
    /// Segments before this index are cleaned (the end of the last is the cleanable end).
    pub segments: usize,
    pub dirty_ratio: f64,
    pub dirty_bytes: u64,
}

/// Whether and how far the partition whose segments are `segments` is cleanable now.
pub fn cleanable(segments: &[SegmentSummary], view: &CleanerView) -> Option<Cleanable> {
    let last = segments.len().checked_sub(1)?;
    let log_start = segments[0].base;
    let first_dirty = view.first_dirty.max(log_start);
    // Segments wholly below the high watermark and younger than none of the lag, before
    // the active one.
    let lag_edge = view.now_ms.saturating_sub(view.min_compaction_lag_ms);
    let end = segments[..last]
        .iter()
        .take_while(|segment| {
            segment.next <= view.high_watermark
                && (view.min_compaction_lag_ms <= 0
                    || segment.next <= first_dirty
                    || segment.max_timestamp_ms <= lag_edge)
        })
        .count();
    let dirty_from = segments[..end]
        .iter()
        .position(|segment| segment.next > first_dirty)
        .unwrap_or(end);
    let clean_bytes: u64 = segments[..dirty_from].iter().map(|s| s.log_len).sum();
    let dirty_bytes: u64 = segments[dirty_from..end].iter().map(|s| s.log_len).sum();
    let total = clean_bytes + dirty_bytes;
    if end == 0 || total == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)] // a ratio of byte counts
    let dirty_ratio = dirty_bytes as f64 / total as f64;
    let overdue = view.max_compaction_lag_ms < i64::MAX
        && segments[dirty_from..end].iter().any(|segment| {
            let first = segment
                .first_timestamp_ms
                .unwrap_or(segment.max_timestamp_ms);
            first >= 0 && first < view.now_ms.saturating_sub(view.max_compaction_lag_ms)
        });
    let horizon_passed = view
        .next_horizon_ms
        .is_some_and(|horizon| view.now_ms >= horizon);
    let worth = (dirty_bytes > 0 && (overdue || dirty_ratio > view.min_cleanable_dirty_ratio))
        || horizon_passed;
    worth.then_some(Cleanable {
        first_dirty,
        segments: end,
        dirty_ratio,
        dirty_bytes,
    })
}

/// Groups consecutive segments into cleaned ones (index ranges into `segments`), each at
/// most `segment_bytes` of input (a single larger segment is its own group) and spanning
/// fewer than 2^31 offsets, so a removed run is one empty batch at most per group edge.
pub fn group_segments(
    segments: &[SegmentSummary],
    segment_bytes: u64,
) -> Vec<std::ops::Range<usize>> {
    let span_max = u64::try_from(i32::MAX).expect("fits");
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let mut end = start + 1;
        let mut bytes = segments[start].log_len;
        while let Some(next) = segments.get(end) {
            let fits = bytes + next.log_len <= segment_bytes;
            let span = next.next.distance_from(segments[start].base);
            if !fits || span > span_max {
                break;
            }
            bytes += next.log_len;
            end += 1;
        }
        groups.push(start..end);
        start = end;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(value: i64) -> Offset {
        Offset::new(value).unwrap()
    }

    /// Segments of `len` bytes each spanning 10 offsets, with newest timestamps `times`.
    fn segments(lens: &[u64], times: &[i64]) -> Vec<SegmentSummary> {
        lens.iter()
            .zip(times)
            .enumerate()
            .map(|(at, (len, time))| {
                let base = i64::try_from(at).unwrap() * 10;
                SegmentSummary {
                    base: offset(base),
                    next: offset(base + 10),
                    log_len: *len,
                    max_timestamp_ms: *time,
                    first_timestamp_ms: Some(*time - 5),
                }
            })
            .collect()
    }

    fn view(first_dirty: i64, ratio: f64) -> CleanerView {
        CleanerView {
            first_dirty: offset(first_dirty),
            high_watermark: offset(1_000),
            min_cleanable_dirty_ratio: ratio,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            next_horizon_ms: None,
            now_ms: 10_000,
        }
    }

    #[test]
    fn the_dirty_ratio_decides_and_the_active_segment_is_never_cleaned() {
        let log = segments(&[100, 100, 100, 50], &[1, 2, 3, 4]);
        // Checkpoint at 10: 100 clean, 200 dirty bytes (the active segment does not count).
        let plan = cleanable(&log, &view(10, 0.5)).unwrap();
        assert_eq!((plan.segments, plan.dirty_bytes), (3, 200));
        assert!((plan.dirty_ratio - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(cleanable(&log, &view(10, 0.7)), None);
        assert_eq!(cleanable(&log, &view(30, 0.0)), None, "nothing dirty");
        assert_eq!(
            cleanable(&log[3..], &view(0, 0.0)),
            None,
            "only the active segment"
        );
    }

    #[test]
    fn the_high_watermark_and_the_minimum_lag_hold_segments_back() {
        let log = segments(&[100, 100, 100, 50], &[1_000, 9_000, 9_500, 9_900]);
        let mut held = view(0, 0.0);
        held.high_watermark = offset(20);
        assert_eq!(cleanable(&log, &held).unwrap().segments, 2);
        let mut lagging = view(0, 0.0);
        lagging.min_compaction_lag_ms = 2_000; // records newer than 8,000 wait
        assert_eq!(cleanable(&log, &lagging).unwrap().segments, 1);
    }

    #[test]
    fn an_overdue_record_or_a_passed_horizon_makes_a_log_cleanable_whatever_its_ratio() {
        let log = segments(&[100, 10, 50], &[1_000, 9_000, 9_900]);
        let mut overdue = view(10, 0.99);
        assert_eq!(cleanable(&log, &overdue), None);
        overdue.max_compaction_lag_ms = 5_000; // the segment at 10 started at 8,995: not due
        assert_eq!(cleanable(&log, &overdue), None);
        overdue.max_compaction_lag_ms = 500;
        assert_eq!(cleanable(&log, &overdue).unwrap().segments, 2);
        let mut horizon = view(20, 0.99);
        horizon.next_horizon_ms = Some(9_999);
        assert!(cleanable(&log, &horizon).is_some());
    }

    #[test]
    fn groups_stay_within_the_segment_size() {
        let log = segments(&[40, 40, 40, 100, 10, 10], &[1; 6]);
        assert_eq!(group_segments(&log, 100), [0..2, 2..3, 3..4, 4..6]);
        assert_eq!(
            group_segments(&log, 1),
            [0..1, 1..2, 2..3, 3..4, 4..5, 5..6]
        );
    }
}
