//! The open Kafka transaction's bookkeeping (exactly-once): when it opened, how many events
//! it holds, where an abort must rewind each partition to, whether a write of it failed, and
//! the acknowledged writes that count into the metrics only once it commits. The Kafka calls
//! that open, commit and abort it are in `exactly_once.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

use super::tag::Target;
use crate::input::InputPartition;
use crate::telemetry::EventMetrics;

#[derive(Debug, Default)]
pub struct Transaction {
    started: Option<Instant>,
    events: usize,
    /// The first event of the transaction on each input partition: where to rewind to.
    first_offsets: HashMap<InputPartition, i64>,
    /// A write of this transaction failed: it can only be aborted.
    failed: Option<KafkaError>,
    /// Aborts since the last commit.
    consecutive_aborts: u32,
    /// Acknowledged writes, counted into the metrics only when the transaction commits.
    delivered: Vec<u64>,
    /// Acknowledged dead-letter and hold writes, likewise.
    other_acks: Vec<(Target, u64)>,
}

impl Transaction {
    pub fn is_open(&self) -> bool {
        self.started.is_some()
    }

    /// Marks it open (Kafka's `begin_transaction` has succeeded).
    pub fn opened(&mut self, at: Instant) {
        self.started = Some(at);
        self.events = 0;
    }

    /// How long it has been open, if it is.
    pub fn open_for(&self) -> Option<Duration> {
        self.started.map(|s| s.elapsed())
    }

    /// Notes an event of the transaction (or a held event resolved in it, which is older than
    /// the transaction's other events: an abort must rewind to it).
    pub fn event(&mut self, input: InputPartition, offset: i64) {
        self.events += 1;
        let first = self.first_offsets.entry(input).or_insert(offset);
        *first = (*first).min(offset);
    }

    /// Notes an acknowledged write, for the metrics at commit.
    pub fn acknowledged(&mut self, target: Target) {
        match target {
            Target::Destination(i) => {
                let i = usize::from(i);
                if self.delivered.len() <= i {
                    self.delivered.resize(i + 1, 0);
                }
                self.delivered[i] += 1;
            }
            Target::DeadLetter(_) | Target::Hold | Target::Learned => {
                match self.other_acks.iter_mut().find(|(t, _)| *t == target) {
                    Some((_, n)) => *n += 1,
                    None => self.other_acks.push((target, 1)),
                }
            }
            Target::Republish => {}
        }
    }

    /// Notes a failed write: the transaction can only be aborted. True for its first one.
    pub fn write_failed(&mut self, error: KafkaError) -> bool {
        let first = self.failed.is_none();
        self.failed.get_or_insert(error);
        first
    }

    /// The first failed write's error, if any.
    pub fn failure(&self) -> Option<KafkaError> {
        self.failed.clone()
    }

    /// True if it is open and at least `max_events` large or `interval` old.
    pub fn due(&self, max_events: usize, interval: Duration) -> bool {
        self.is_open()
            && (self.events >= max_events || self.open_for().is_some_and(|open| open >= interval))
    }

    /// It committed: its acknowledged writes count now, and the next one starts afresh.
    pub fn committed(&mut self, metrics: &EventMetrics) {
        for (i, n) in self.delivered.drain(..).enumerate() {
            metrics.delivered[i].increment(n);
        }
        for (target, n) in self.other_acks.drain(..) {
            match target {
                Target::DeadLetter(reason) => metrics.dead_lettered_by(reason, n),
                Target::Hold => metrics.held.iter().for_each(|c| c.increment(n)),
                Target::Learned => metrics.learned.increment(n),
                Target::Destination(_) | Target::Republish => {}
            }
        }
        *self = Transaction::default();
    }

    /// An abort is under way: the number of aborts since the last commit, this one included.
    pub fn aborting(&mut self) -> u32 {
        self.consecutive_aborts += 1;
        self.consecutive_aborts
    }

    /// It aborted: where each partition must be rewound to. Its acknowledged writes never
    /// count; the aborts since the last commit are kept.
    pub fn aborted(&mut self) -> Vec<(InputPartition, i64)> {
        let rewind = self.first_offsets.drain().collect();
        *self = Transaction {
            consecutive_aborts: self.consecutive_aborts,
            ..Transaction::default()
        };
        rewind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(partition: u16) -> InputPartition {
        InputPartition {
            topic: 0,
            partition,
        }
    }

    #[test]
    fn a_transaction_is_due_by_size_or_by_age_and_never_when_closed() {
        let mut txn = Transaction::default();
        assert!(!txn.due(1, Duration::ZERO));
        txn.opened(Instant::now());
        assert!(!txn.due(2, Duration::from_secs(60)));
        txn.event(input(0), 5);
        txn.event(input(0), 6);
        assert!(txn.due(2, Duration::from_secs(60)));
        let mut old = Transaction::default();
        old.opened(Instant::now() - Duration::from_secs(2));
        assert!(old.due(1_000, Duration::from_secs(1)));
    }

    #[test]
    fn an_abort_rewinds_each_partition_to_its_earliest_event_and_keeps_the_abort_count() {
        let mut txn = Transaction::default();
        txn.opened(Instant::now());
        txn.event(input(0), 10);
        txn.event(input(1), 4);
        // A held event resolved in the transaction is older than the others.
        txn.event(input(0), 7);
        assert!(txn.write_failed(KafkaError::Canceled));
        assert!(!txn.write_failed(KafkaError::Canceled));
        assert_eq!(txn.aborting(), 1);
        let mut rewind = txn.aborted();
        rewind.sort();
        assert_eq!(rewind, vec![(input(0), 7), (input(1), 4)]);
        assert!(!txn.is_open());
        assert!(txn.failure().is_none());
        assert_eq!(
            txn.aborting(),
            2,
            "aborts since the last commit are counted on"
        );
    }

    #[test]
    fn acknowledged_writes_count_only_when_the_transaction_commits() {
        let metrics = EventMetrics::register(["a", "b"]);
        let mut txn = Transaction::default();
        txn.opened(Instant::now());
        txn.acknowledged(Target::Destination(1));
        txn.acknowledged(Target::Destination(1));
        assert_eq!(txn.delivered, vec![0, 2]);
        txn.aborting();
        txn.committed(&metrics);
        assert!(txn.delivered.is_empty());
        assert!(!txn.is_open());
        assert_eq!(txn.aborting(), 1, "a commit resets the abort count");
    }
}
