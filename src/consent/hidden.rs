//! Consent records hidden behind an open transaction.
//!
//! The consent table is read `read_committed`, and freshness compares it with the partitions'
//! last stable offsets. A producer that leaves a transaction open on a consent partition holds
//! that offset back: records written after it, even acknowledged non-transactional
//! revocations, stay invisible, and the table still looks current. librdkafka's statistics
//! give each partition's high watermark and last stable offset; when the stable offset stays
//! below the high watermark without moving for longer than `consent.max_staleness_ms`, the
//! table is treated as stale (fail closed) until it moves.
//!
//! When the transaction ends, the statistics that show the stable offset moving are the first
//! news of the records it held back, often before a sample of end offsets sees them: so the
//! stable offsets seen here are ends the table must reach too (see `visible_ends`), or a sample
//! taken while they were hidden would pass for current the moment they stopped being hidden.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct HiddenRecords {
    /// Per partition: the stable offset last seen below the high watermark, and since when.
    stuck: HashMap<i32, (i64, Instant)>,
    /// Per partition: the newest last stable offset seen.
    visible: HashMap<i32, i64>,
}

impl HiddenRecords {
    /// Notes a partition's high watermark and last stable offset as seen at `now`.
    pub fn observe(&mut self, partition: i32, high_watermark: i64, stable: i64, now: Instant) {
        let visible = self.visible.entry(partition).or_insert(stable);
        *visible = (*visible).max(stable);
        if stable >= high_watermark {
            self.stuck.remove(&partition);
            return;
        }
        match self.stuck.get(&partition) {
            Some((seen, _)) if *seen == stable => {}
            _ => {
                self.stuck.insert(partition, (stable, now));
            }
        }
    }

    /// Forgets a partition no longer followed.
    pub fn forget(&mut self, partition: i32) {
        self.stuck.remove(&partition);
        self.visible.remove(&partition);
    }

    /// The newest last stable offset seen of each partition: records before it are readable.
    pub fn visible_ends(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.visible.iter().map(|(p, end)| (*p, *end))
    }

    /// How long the longest-stuck partition has had records above its stable offset.
    pub fn hidden_for(&self, now: Instant) -> Duration {
        self.stuck
            .values()
            .map(|(_, since)| now.saturating_duration_since(*since))
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stable_offset_stuck_below_the_high_watermark_counts_from_when_it_was_first_seen() {
        let start = Instant::now();
        let mut hidden = HiddenRecords::default();
        hidden.observe(0, 10, 7, start);
        hidden.observe(0, 12, 7, start + Duration::from_secs(5));
        assert_eq!(
            hidden.hidden_for(start + Duration::from_secs(9)),
            Duration::from_secs(9)
        );
    }

    #[test]
    fn a_moving_stable_offset_starts_the_count_again() {
        let start = Instant::now();
        let mut hidden = HiddenRecords::default();
        hidden.observe(0, 10, 7, start);
        hidden.observe(0, 12, 9, start + Duration::from_secs(5));
        assert_eq!(
            hidden.hidden_for(start + Duration::from_secs(6)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_stable_offset_seen_last_is_an_end_to_reach_and_never_goes_back() {
        let start = Instant::now();
        let mut hidden = HiddenRecords::default();
        hidden.observe(0, 10, 7, start);
        hidden.observe(0, 12, 12, start);
        hidden.observe(0, 12, 9, start);
        hidden.observe(1, 3, 3, start);
        let mut ends: Vec<(i32, i64)> = hidden.visible_ends().collect();
        ends.sort_unstable();
        assert_eq!(ends, [(0, 12), (1, 3)]);
        hidden.forget(0);
        assert_eq!(hidden.visible_ends().collect::<Vec<_>>(), [(1, 3)]);
    }

    #[test]
    fn nothing_is_hidden_once_the_stable_offset_reaches_the_high_watermark() {
        let start = Instant::now();
        let mut hidden = HiddenRecords::default();
        hidden.observe(0, 10, 7, start);
        hidden.observe(1, 4, 2, start);
        hidden.observe(0, 10, 10, start + Duration::from_secs(5));
        hidden.forget(1);
        assert_eq!(
            hidden.hidden_for(start + Duration::from_secs(60)),
            Duration::ZERO
        );
    }
}
