//! How far a follower of a whole topic (the consent topic, the privacy topic) has read each
//! partition: whether start-up has read it to the end it had when it was followed, and up to
//! which offset every record is applied (what a freshness sample is compared with).

use std::collections::{HashMap, HashSet};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;

#[derive(Debug, Default)]
pub(crate) struct ReadProgress {
    /// Partitions not yet read to the end they had when followed.
    behind: HashSet<i32>,
    /// The end offset each partition had when followed.
    start_ends: HashMap<i32, i64>,
    /// How far each partition is known to be applied: every record before it is.
    applied_to: HashMap<i32, i64>,
}

impl ReadProgress {
    /// A partition followed from its beginning, `low` to `high` as it is now.
    pub(crate) fn follow(&mut self, partition: i32, low: i64, high: i64) {
        if high > low {
            self.behind.insert(partition);
        }
        self.start_ends.insert(partition, high);
        // Nothing before the log start is left to read.
        self.applied_to.insert(partition, low);
    }

    pub(crate) fn forget(&mut self, partition: i32) {
        self.behind.remove(&partition);
        self.start_ends.remove(&partition);
        self.applied_to.remove(&partition);
    }

    /// Every record before `next` in `partition` is applied.
    pub(crate) fn applied(&mut self, partition: i32, next: i64) {
        let applied = self.applied_to.entry(partition).or_insert(next);
        *applied = (*applied).max(next);
        if self
            .start_ends
            .get(&partition)
            .is_some_and(|end| next >= *end)
        {
            self.behind.remove(&partition);
        }
    }

    /// The end `partition` had when followed is reached, possibly past markers only.
    pub(crate) fn end_reached(&mut self, partition: i32) {
        self.behind.remove(&partition);
        if let Some(end) = self.start_ends.get(&partition).copied() {
            self.applied(partition, end);
        }
    }

    pub(crate) fn is_behind(&self, partition: i32) -> bool {
        self.behind.contains(&partition)
    }

    pub(crate) fn start_end(&self, partition: i32) -> Option<i64> {
        self.start_ends.get(&partition).copied()
    }

    /// Every partition is read to the end it had when followed.
    pub(crate) fn loaded(&self) -> bool {
        self.behind.is_empty()
    }

    /// Every record before `end` in `partition` is applied.
    pub(crate) fn applied_through(&self, partition: i32, end: i64) -> bool {
        self.applied_to.get(&partition).is_some_and(|a| *a >= end)
    }

    /// Transaction markers and aborted records advance the consumer's position without a
    /// message: take its positions as applied.
    pub(crate) fn catch_up_with<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if let Ok(positions) = consumer.position() {
            for element in positions.elements() {
                if let Offset::Offset(position) = element.offset() {
                    let applied = self
                        .applied_to
                        .entry(element.partition())
                        .or_insert(position);
                    *applied = (*applied).max(position);
                }
            }
        }
    }
}
