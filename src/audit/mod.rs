//! The consent audit log (`[audit] topic`): every change this instance applies to its consent
//! and privacy view, read from the consent and privacy topics (consent learned from events
//! included: it is applied when read back), written as one record each: the user key, the
//! view before and after, the source (topic, partition, offset, and the `messageId` of the
//! event a learned state came from) and when it was applied.
//!
//! Applying never waits for the log: a change is queued ([`Auditor`]) and written by its own
//! thread ([`writer`]). How far the topics have been audited is committed to a consumer group
//! of this instance (`audit.checkpoint_group`) once the records are acknowledged, or in the
//! same transaction as the records in exactly-once mode; at the next start the records below
//! those offsets are applied without being audited again.

mod record;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaResult;

use crate::config::Config;
use crate::consent::suppressions::PrivacyView;
use crate::consent::ConsentState;
use crate::vocabulary::Vocabulary;

/// Changes queued and not yet written, at most: past it the consent and privacy topics are
/// not read until the log catches up (events then wait for fresh consent: nothing leaks).
const MAX_QUEUED: usize = 100_000;

/// Which view a change is of, and so which topic it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Consent,
    Privacy,
}

impl View {
    pub fn as_str(self) -> &'static str {
        match self {
            View::Consent => "consent",
            View::Privacy => "privacy",
        }
    }
}

/// A view of one user, before or after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// The consent state in the table (`None`: no state).
    Consent(Option<ConsentState>),
    Privacy(PrivacyView),
}

/// Where a change was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub view: View,
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp.
    pub timestamp_ms: Option<i64>,
    /// Learned from an event (`consent.learn_from_events`): its `messageId`, if it had one.
    pub learned: Option<Option<Box<str>>>,
}

/// One change applied to the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub user: Box<str>,
    pub before: Snapshot,
    pub after: Snapshot,
    /// The record was malformed and left the user failed closed: why (the metric's reason).
    pub rejected: Option<&'static str>,
    pub source: Source,
    pub applied_at_ms: i64,
}

/// How far each view's partitions are audited: the next offset to audit.
type Checkpoint = HashMap<(View, i32), i64>;

enum Item {
    Change(Box<Change>),
    /// Every record of the partition before `next` is applied (and its change, if any,
    /// queued before this).
    Advance {
        view: View,
        partition: i32,
        next: i64,
    },
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    /// How far each partition has been applied and queued in this run: a partition followed
    /// again (co-partitioned mode) is read from its beginning, and what this run queued
    /// already is not audited twice.
    through: Checkpoint,
    /// Changes in `items`.
    changes: usize,
    /// Asked to end: write what is queued, until then at most.
    closing: Option<Instant>,
    /// The writer has written (or given up on) everything and ended.
    ended: bool,
    /// It ended with a batch it could not write.
    unwritten: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Queues the changes the followers apply for the audit thread. Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    shared: Arc<Shared>,
    /// Held by every handle: once the last is dropped (the service ended without `close`),
    /// the writer writes what is queued and ends.
    _alive: Arc<()>,
    /// Where the log stood at start, per view and partition: records below it were audited
    /// before.
    checkpoint: Arc<Checkpoint>,
}

impl Auditor {
    /// Reads how far this instance audited before (`consent_partitions` and
    /// `privacy_partitions` of the two topics) and starts the writer. Transient errors of the
    /// cluster are retried until `deadline`.
    pub fn start(
        config: &Config,
        vocabulary: Arc<Vocabulary>,
        consent_partitions: i32,
        privacy_partitions: i32,
        deadline: Instant,
    ) -> KafkaResult<Option<Auditor>> {
        let Some(audit) = &config.audit else {
            return Ok(None);
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let alive = Arc::new(());
        let (writer, checkpoint) = writer::Writer::start(
            config,
            audit,
            vocabulary,
            shared.clone(),
            Arc::downgrade(&alive),
            (consent_partitions, privacy_partitions),
            deadline,
        )?;
        writer.spawn()?;
        Ok(Some(Auditor {
            shared,
            _alive: alive,
            checkpoint: Arc::new(checkpoint),
        }))
    }

    /// Whether the record at `offset` is to be audited: it was not, before this start or
    /// earlier in this run.
    pub fn covers(&self, view: View, partition: i32, offset: i64) -> bool {
        let before_start = self
            .checkpoint
            .get(&(view, partition))
            .is_some_and(|&done| offset < done);
        !before_start
            && self
                .shared
                .lock()
                .through
                .get(&(view, partition))
                .is_none_or(|&done| offset >= done)
    }

    /// Whether there is room for more changes. When there is not, the followers stop reading
    /// until the writer catches up.
    pub fn has_room(&self) -> bool {
        let queue = self.shared.lock();
        // A writer that ended (it panicked) writes nothing more: nothing more is applied.
        queue.changes < MAX_QUEUED && !queue.ended
    }

    /// Queues a change.
    pub fn record(&self, change: Change) {
        let mut queue = self.shared.lock();
        queue.changes += 1;
        queue.items.push_back(Item::Change(Box::new(change)));
        drop(queue);
        self.shared.wake.notify_one();
    }

    /// Notes that every record of `partition` before `next` is applied.
    pub fn advance(&self, view: View, partition: i32, next: i64) {
        if !self.covers(view, partition, next - 1) {
            return;
        }
        let mut queue = self.shared.lock();
        queue.through.insert((view, partition), next);
        if let Some(Item::Advance {
            view: last_view,
            partition: last_partition,
            next: last_next,
        }) = queue.items.back_mut()
        {
            if *last_view == view && *last_partition == partition {
                *last_next = next;
                return;
            }
        }
        queue.items.push_back(Item::Advance {
            view,
            partition,
            next,
        });
    }

    /// Asks the writer to write what is queued and end, and waits for it until `deadline`.
    /// True if everything queued was written. What was not is audited again after a restart
    /// (its offsets were not committed).
    pub fn close(&self, deadline: Instant) -> bool {
        let mut queue = self.shared.lock();
        queue.closing = Some(deadline);
        self.shared.wake.notify_all();
        while !queue.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue = self
                .shared
                .wake
                .wait_timeout(queue, left.min(Duration::from_millis(100)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        queue.items.is_empty() && !queue.unwritten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auditor(checkpoint: Checkpoint) -> Auditor {
        Auditor {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
            }),
            _alive: Arc::new(()),
            checkpoint: Arc::new(checkpoint),
        }
    }

    #[test]
    fn a_record_is_audited_once_whether_seen_before_the_start_or_earlier_in_the_run() {
        let audit = auditor(HashMap::from([((View::Consent, 0), 10)]));
        // Audited before this start.
        assert!(!audit.covers(View::Consent, 0, 9));
        assert!(audit.covers(View::Consent, 0, 10));
        assert!(audit.covers(View::Consent, 1, 0));
        assert!(audit.covers(View::Privacy, 0, 0));
        // Applied in this run; the partition is then followed again from its beginning.
        audit.advance(View::Consent, 0, 15);
        audit.advance(View::Consent, 1, 3);
        assert!(!audit.covers(View::Consent, 0, 14));
        assert!(audit.covers(View::Consent, 0, 15));
        assert!(!audit.covers(View::Consent, 1, 2));
        assert!(audit.covers(View::Privacy, 1, 2));
        // Advances of one partition in a row are one item; offsets already queued add none.
        audit.advance(View::Consent, 1, 4);
        audit.advance(View::Consent, 1, 4);
        assert_eq!(audit.shared.lock().items.len(), 2);
    }
}
