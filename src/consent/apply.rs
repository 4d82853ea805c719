//! Applying consent records to the table: what each outcome counts, re-publishes and tells
//! the rest of the service.

use std::sync::Arc;

use rdkafka::message::{BorrowedMessage, Message};

use super::follower::ConsentEffects;
use super::record::{parse_key, read_message};
use super::republish::{Republishing, REPUBLISHED_HEADER};
use super::table::{RecordOutcome, Widest};
use super::{ConsentState, ConsentTable, ConsentUpdate, Rejection};
use crate::audit::{Auditor, Change, Snapshot, Source, View};
use crate::config::ConsentFormat;
use crate::pipeline::learn::{LEARNED_FROM_HEADER, LEARNED_HEADER};
use crate::telemetry::ConsentMetrics;
use crate::vocabulary::Vocabulary;

/// Applies records to the table (apart from the consumer, so a borrowed message can be
/// applied while the consumer is borrowed).
pub(super) struct Applier {
    /// One table for the whole topic, or in co-partitioned mode one per consent partition
    /// (empty unless followed).
    pub(super) tables: Vec<ConsentTable>,
    pub(super) history_window_ms: i64,
    pub(super) history_max_changes: usize,
    pub(super) vocabulary: Arc<Vocabulary>,
    /// A state that narrows nobody.
    pub(super) widest: Widest,
    pub(super) copartitioned: bool,
    /// `consent.format`.
    pub(super) format: ConsentFormat,
    /// Stale records to override.
    pub(super) republishing: Republishing,
    pub(super) metrics: ConsentMetrics,
    /// The audit log, when configured.
    pub(super) audit: Option<Auditor>,
}

/// Whether a consent record is an override of a stale record, written by an enforcer.
fn is_override(message: &BorrowedMessage<'_>) -> bool {
    message.headers().is_some_and(|headers| {
        crate::delivery::headers::raw(headers).any(|h| h.name == REPUBLISHED_HEADER.as_bytes())
    })
}

/// Whether an override applies over a state it was not written for: one with the same time
/// or a later one and other grants, or a failed-closed one (a CMP record it landed after
/// without having read it; the override of a failed-closed user reads back malformed). An
/// override applies only over an older state, or as the same state again.
fn overtaken(
    stored: Option<ConsentState>,
    update: &Result<ConsentUpdate, Rejection>,
    record_time_ms: i64,
) -> bool {
    match (stored, update) {
        (Some(stored), Ok(ConsentUpdate::Set(_))) if stored.is_failed_closed() => true,
        (Some(stored), Ok(ConsentUpdate::Set(state))) => {
            let applied = state.applied_at(record_time_ms);
            applied != stored && applied.updated_at_ms <= stored.updated_at_ms
        }
        _ => false,
    }
}

/// Whether a consent record was learned from an event, and that event's `messageId`.
fn learned_from(message: &BorrowedMessage<'_>) -> Option<Option<Box<str>>> {
    let headers = message.headers()?;
    let mut learned = false;
    let mut message_id = None;
    for header in crate::delivery::headers::raw(headers) {
        if header.name == LEARNED_HEADER.as_bytes() {
            learned = true;
        } else if header.name == LEARNED_FROM_HEADER.as_bytes() {
            message_id = header
                .value
                .and_then(|value| std::str::from_utf8(value).ok())
                .map(Box::from);
        }
    }
    learned.then_some(message_id)
}

/// A user's state now in the table of a consent partition.
pub(super) fn current_in(
    tables: &[ConsentTable],
    copartitioned: bool,
) -> impl Fn(i32, &str) -> Option<ConsentState> + '_ {
    move |partition, user| tables[table_index(copartitioned, partition, tables.len())].get(user)
}

/// Which of `tables` tables (at least one) holds the users of consent `partition`.
fn table_index(copartitioned: bool, partition: i32, tables: usize) -> usize {
    let index = if copartitioned {
        usize::try_from(partition).unwrap_or(0)
    } else {
        0
    };
    index.min(tables.saturating_sub(1))
}

impl Applier {
    pub(super) fn table_of(&self, partition: i32) -> &ConsentTable {
        &self.tables[table_index(self.copartitioned, partition, self.tables.len())]
    }

    pub(super) fn table_mut(&mut self, partition: i32) -> &mut ConsentTable {
        let index = table_index(self.copartitioned, partition, self.tables.len());
        &mut self.tables[index]
    }

    /// Forgets a consent partition no longer followed (co-partitioned mode).
    pub(super) fn forget_partition(&mut self, partition: i32) {
        if self.copartitioned {
            let empty = ConsentTable::new(self.history_window_ms, self.history_max_changes);
            let mut table = std::mem::replace(self.table_mut(partition), empty);
            // Who is suppressed comes from the privacy topic, which every table follows whole.
            *self.table_mut(partition).suppressions_mut() =
                std::mem::take(table.suppressions_mut());
            self.republishing
                .forget_partition(partition, &|user| table.get(user));
        }
    }

    /// Applies one consent record to the table, and queues the change it makes for the audit
    /// log. False if it was not applied because the writes that must finish before it could
    /// not (the service is stopping or failed).
    pub(super) fn apply(
        &mut self,
        message: &BorrowedMessage<'_>,
        now_ms: i64,
        effects: &mut dyn ConsentEffects,
    ) -> bool {
        self.metrics.received.increment(1);
        let user = match parse_key(message.key()) {
            Ok(user) => user,
            Err(reason) => {
                self.metrics.rejected(reason);
                return true;
            }
        };
        let partition = message.partition();
        let audited = self
            .audit
            .as_ref()
            .is_some_and(|audit| audit.covers(View::Consent, partition, message.offset()));
        let before = audited.then(|| self.table_of(partition).get(user));
        let Some(rejected) = self.apply_to_table(message, user, now_ms, effects) else {
            return false;
        };
        if let (Some(before), Some(audit)) = (before, &self.audit) {
            let after = self.table_of(partition).get(user);
            if before != after {
                audit.record(Change {
                    user: user.into(),
                    before: Snapshot::Consent(before),
                    after: Snapshot::Consent(after),
                    rejected: rejected.map(Rejection::as_str),
                    source: Source {
                        view: View::Consent,
                        partition,
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis(),
                        learned: learned_from(message),
                    },
                    applied_at_ms: now_ms,
                });
            }
        }
        true
    }

    /// Applies a record of `user`. `None` if it was not applied (see [`Applier::apply`]);
    /// else the reason it failed the user closed, if it did.
    fn apply_to_table(
        &mut self,
        message: &BorrowedMessage<'_>,
        user: &str,
        now_ms: i64,
        effects: &mut dyn ConsentEffects,
    ) -> Option<Option<Rejection>> {
        // Without a Kafka timestamp, the time it is read stands in.
        let record_time_ms = message.timestamp().to_millis().unwrap_or(now_ms);
        let partition = message.partition();
        let read = read_message(message, self.format, record_time_ms, &self.vocabulary);
        if read.unknown_names > 0 {
            self.metrics
                .unknown_names
                .increment(u64::from(read.unknown_names));
        }
        let update = read.update;
        let all = self.widest;
        let is_override = is_override(message);
        let table = self.table_mut(partition);
        if is_override && overtaken(table.get(user), &update, record_time_ms) {
            // Written over a state it had not read: stale, and overridden in turn.
            self.metrics.rejected(Rejection::Stale);
            self.republishing.stale(partition, user, message.offset());
            return Some(None);
        }
        if table.may_narrow(user, &update, record_time_ms, all) {
            if !effects.before_revocation() {
                return None;
            }
            // When it takes effect: nothing judged before it lands after this.
            // Under the follower's target, where it was before applying moved here: log filters
            // (`consent_enforcer::consent::follower=debug`) keep finding it.
            tracing::debug!(
                target: "consent_enforcer::consent::follower",
                partition,
                offset = message.offset(),
                "applying a consent record that may narrow a grant"
            );
        }
        let table = self.table_mut(partition);
        // An override read back with a different state before it: that state came from the
        // stale record it overrode (compaction removed the newer record between them), and the
        // states in force between the two are unknown.
        let overrode = is_override
            && table
                .get(user)
                .is_some_and(|stored| update.is_ok_and(|u| u != ConsentUpdate::Set(stored)));
        let outcome = table.apply_record(user, update, record_time_ms, now_ms);
        if overrode {
            table.forget_history(user);
        }
        let failed_closed = match outcome {
            RecordOutcome::FailedClosed(reason) => Some(reason),
            _ => None,
        };
        let superseded = match outcome {
            RecordOutcome::Removed => {
                self.metrics.removed.increment(1);
                true
            }
            RecordOutcome::Stored { future_dated } => {
                self.metrics.applied.increment(1);
                if future_dated {
                    self.metrics.future_dated.increment(1);
                }
                effects.applied(user);
                true
            }
            RecordOutcome::Stale { .. } => {
                self.metrics.rejected(Rejection::Stale);
                self.republishing.stale(partition, user, message.offset());
                false
            }
            RecordOutcome::FailedClosed(reason) => {
                self.metrics.rejected(reason);
                effects.applied(user);
                true
            }
        };
        if superseded {
            self.republishing.superseded(partition, user);
        }
        Some(failed_closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(bits: u64, updated_at_ms: i64) -> ConsentState {
        ConsentState {
            granted: crate::vocabulary::CategorySet::from_bits(bits),
            updated_at_ms,
        }
    }

    #[test]
    fn an_override_applies_only_over_an_older_state_or_as_the_same_one() {
        let set = |s| Ok(ConsentUpdate::Set(s));
        // Over an older state (a stale record left by compaction), or the same again: applies.
        assert!(!overtaken(Some(state(1, 10)), &set(state(2, 20)), 99));
        assert!(!overtaken(Some(state(2, 20)), &set(state(2, 20)), 99));
        // Over a record with the same time and other grants, or a later one: overtaken.
        assert!(overtaken(Some(state(1, 20)), &set(state(2, 20)), 99));
        assert!(overtaken(Some(state(1, 30)), &set(state(2, 20)), 99));
        // A valid override over a failed-closed user was written before the malformed record.
        assert!(overtaken(
            Some(ConsentState::FAILED_CLOSED),
            &set(state(2, 20)),
            99
        ));
        // No state, or an override that reads back malformed: applies.
        assert!(!overtaken(None, &set(state(2, 20)), 99));
        assert!(!overtaken(Some(state(1, 30)), &Err(Rejection::NotJson), 99));
    }
}
