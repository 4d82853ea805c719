//! Every user's consent, keyed by user identifier (`userId` and `anonymousId` share one key
//! space): the current state, and for users whose consent changed recently, the states before
//! it, so an event can be judged by the consent in force at its own time.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::history::History;
use super::key::UserKey;
use super::record::MAX_IDENTIFIER_BYTES;
use super::suppressions::Suppressions;
use super::{ConsentState, ConsentUpdate, Rejection};
use crate::config::Config;
use crate::vocabulary::{CategorySet, Vocabulary};

#[derive(Debug)]
pub struct ConsentTable {
    /// The current state of every user; a user failed closed by a malformed record holds
    /// [`ConsentState::FAILED_CLOSED`].
    states: HashMap<UserKey, ConsentState, RandomState>,
    /// Earlier states of users whose consent changed while the enforcer ran.
    history: HashMap<UserKey, History, RandomState>,
    /// Users failed closed, with the last valid state before it: a later record older than
    /// that one is stale, as it would have been without the malformed record.
    failed: HashMap<UserKey, Option<ConsentState>, RandomState>,
    /// Earlier states that stopped being in force longer ago than this are forgotten.
    history_window_ms: i64,
    /// At most this many changes of grants are kept per user.
    history_max_changes: usize,
    /// Who is suppressed by privacy requests.
    suppressions: Suppressions,
}

impl Default for ConsentTable {
    fn default() -> Self {
        ConsentTable::new(7 * 24 * 3_600_000, 8)
    }
}

/// The widest state: one that takes nothing away from anyone. It grants every category and
/// channel (`all`) and has no other bits but a jurisdiction whose GPC denies nothing
/// (`harmless`), and when some jurisdiction's GPC denies something (`shield_needed`), it has
/// such a jurisdiction: otherwise an event with GPC could fall under one that denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widest {
    pub all: CategorySet,
    pub harmless: CategorySet,
    pub shield_needed: bool,
}

impl Widest {
    /// Bounds without jurisdictions: every category and channel.
    pub fn of(all: CategorySet) -> Widest {
        Widest {
            all,
            harmless: CategorySet::EMPTY,
            shield_needed: false,
        }
    }

    pub fn holds(self, granted: CategorySet) -> bool {
        granted.is_superset(self.all)
            && granted.without(self.all).without(self.harmless).is_empty()
            && (!self.shield_needed || granted.intersects(self.harmless))
    }
}

/// What applying one consent record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// A valid record's state is the user's state now. `future_dated`: its `updatedAt` was
    /// later than the record's timestamp, and was capped at it.
    Stored { future_dated: bool },
    /// A tombstone: the user is forgotten.
    Removed,
    /// The record is older than the user's state (or than the last valid state before a
    /// malformed record), which is kept and is to be re-published.
    Stale { stored: ConsentState },
    /// A malformed record: the user is failed closed.
    FailedClosed(Rejection),
}

/// The consent an identifier had at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatesAt<'t> {
    /// No state is stored for the identifier: it is no consent source, at any time.
    Absent,
    /// Which state was in force is not known: the time is before the oldest state kept (the
    /// rest was evicted, or compacted away before a restart), or the identifier is failed
    /// closed. Judged as no consent.
    Unknown,
    /// The states that may have been in force.
    Known(Candidates<'t>),
}

/// The last state set strictly before a time, and every state set in that time's own
/// millisecond (which cannot be ordered against it), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidates<'t> {
    current: Option<ConsentState>,
    earlier: &'t [ConsentState],
}

impl<'t> Candidates<'t> {
    pub fn iter(&self) -> impl Iterator<Item = ConsentState> + 't {
        self.current.into_iter().chain(self.earlier.iter().copied())
    }
}

impl ConsentTable {
    pub fn new(history_window_ms: i64, history_max_changes: usize) -> ConsentTable {
        ConsentTable {
            states: HashMap::default(),
            history: HashMap::default(),
            failed: HashMap::default(),
            history_window_ms,
            history_max_changes,
            suppressions: Suppressions::default(),
        }
    }

    pub fn suppressions(&self) -> &Suppressions {
        &self.suppressions
    }

    pub fn suppressions_mut(&mut self) -> &mut Suppressions {
        &mut self.suppressions
    }

    /// Whether `user`'s events dated `time_ms` reach no destination.
    pub fn suppressed(&self, user: &str, time_ms: i64) -> bool {
        self.suppressions.is_suppressed(user, time_ms)
    }

    /// `user`'s current state. An identifier too long to be stored is failed closed.
    pub fn get(&self, user: &str) -> Option<ConsentState> {
        if user.len() > MAX_IDENTIFIER_BYTES {
            return Some(ConsentState::FAILED_CLOSED);
        }
        self.states.get(user).copied()
    }

    /// The states `user` may have had in force at `time_ms`. A state set in the event's own
    /// millisecond is not known to precede the event, so both it and the one before it are
    /// candidates (the caller requires every candidate to allow: a tie fails closed).
    pub fn states_at(&self, user: &str, time_ms: i64) -> StatesAt<'_> {
        let Some(current) = self.get(user) else {
            return StatesAt::Absent;
        };
        if current.is_failed_closed() {
            return StatesAt::Unknown;
        }
        if current.updated_at_ms < time_ms {
            return StatesAt::Known(Candidates {
                current: Some(current),
                earlier: &[],
            });
        }
        let earlier = self.history.get(user).map_or(&[][..], History::states);
        let first = earlier
            .iter()
            .position(|s| s.updated_at_ms <= time_ms)
            .unwrap_or(earlier.len());
        match earlier[first..]
            .iter()
            .position(|s| s.updated_at_ms < time_ms)
        {
            Some(before) => StatesAt::Known(Candidates {
                current: (current.updated_at_ms == time_ms).then_some(current),
                earlier: &earlier[first..=first + before],
            }),
            None => StatesAt::Unknown,
        }
    }

    /// Applies one consent record for `user`: a state (its `updatedAt` capped at
    /// `record_time_ms`, the record's timestamp), a tombstone, or a malformed record.
    /// `now_ms` places the history window.
    pub fn apply_record(
        &mut self,
        user: &str,
        record: Result<ConsentUpdate, Rejection>,
        record_time_ms: i64,
        now_ms: i64,
    ) -> RecordOutcome {
        match record {
            Ok(ConsentUpdate::Remove) => {
                self.remove(user);
                RecordOutcome::Removed
            }
            Ok(ConsentUpdate::Set(claimed)) => {
                let future_dated = claimed.updated_at_ms > record_time_ms;
                let state = claimed.applied_at(record_time_ms);
                match self.store(user, state, now_ms) {
                    Some(stored) => RecordOutcome::Stale { stored },
                    None => RecordOutcome::Stored { future_dated },
                }
            }
            Err(reason) => {
                self.fail_closed(user);
                RecordOutcome::FailedClosed(reason)
            }
        }
    }

    /// Forgets the states `user`'s current one superseded: after an override of a stale
    /// record that was read back with a different state before it (see
    /// [`super::follower`]), the state it superseded came from that stale record, and the
    /// states really in force between them were compacted away. Times before the current
    /// state are then unknown, which fails closed.
    pub fn forget_history(&mut self, user: &str) {
        if !self.history.is_empty() {
            self.history.remove(user);
        }
    }

    /// What [`ConsentTable::may_narrow`] takes for a config: see [`Widest`].
    pub fn widest(config: &Config, vocabulary: &Vocabulary) -> Widest {
        let mut harmless = CategorySet::EMPTY;
        for j in config
            .jurisdictions
            .iter()
            .filter(|j| j.gpc_denies.is_empty())
        {
            if let Some(bit) = vocabulary.jurisdiction_named(&j.name) {
                harmless.insert(bit);
            }
        }
        Widest {
            all: vocabulary.all_categories(),
            harmless,
            shield_needed: config
                .jurisdictions
                .iter()
                .any(|j| !j.gpc_denies.is_empty()),
        }
    }

    /// Whether applying `record` could take a grant away from any person, now: every change
    /// does but a state granting every category and channel (`all`) with no other bits than
    /// `harmless` (a jurisdiction, which only decides for users without a state; not GPC,
    /// which denies), or a record that would be stale. A
    /// person's consent is the newer of the states of two identifiers, and which identifiers
    /// pair up is known only from events, so a change that looks wider for this identifier
    /// can still narrow a person whose other identifier's state it supersedes.
    pub fn may_narrow(
        &self,
        user: &str,
        record: &Result<ConsentUpdate, Rejection>,
        record_time_ms: i64,
        widest: Widest,
    ) -> bool {
        let current = self.get(user);
        if current.is_some_and(|s| s.is_failed_closed()) {
            // The person is granted nothing while this identifier is failed closed: nothing
            // that replaces its state can narrow them.
            return false;
        }
        match record {
            Ok(ConsentUpdate::Remove) => current.is_some(),
            Ok(ConsentUpdate::Set(state)) => {
                let applied = state.applied_at(record_time_ms);
                // The same state again (an override read back, a record sent twice) changes
                // nothing.
                current != Some(applied)
                    && !widest.holds(state.granted)
                    && self
                        .bar(user)
                        .is_none_or(|bar| bar <= applied.updated_at_ms)
            }
            Err(_) => true,
        }
    }

    /// Stores `state` unless it is older than the stored one (or than the last valid state
    /// before a malformed record); returns that one if so.
    fn store(&mut self, user: &str, state: ConsentState, now_ms: i64) -> Option<ConsentState> {
        if self.bar(user).is_some_and(|bar| bar > state.updated_at_ms) {
            // What stays stored: for a user failed closed, the failed-closed state (whose
            // re-published form reads back as malformed, not as the grants before it).
            return Some(self.get(user).unwrap_or(state));
        }
        match self.states.get_mut(user) {
            Some(stored) if stored.is_failed_closed() => {
                // Nothing before this record is known: the history stays forgotten.
                *stored = state;
                self.failed.remove(user);
            }
            Some(stored) => {
                let previous = std::mem::replace(stored, state);
                let horizon = now_ms.saturating_sub(self.history_window_ms);
                let max_changes = self.history_max_changes;
                // The same state again (a re-published state read back, a record sent twice)
                // tells nothing new about any time.
                if previous == state {
                    return None;
                }
                if max_changes > 0 && state.updated_at_ms >= horizon {
                    let history = self.history.entry(user.into()).or_default();
                    history.supersede(previous, state.updated_at_ms, horizon, max_changes);
                    if history.is_empty() {
                        self.history.remove(user);
                    }
                } else {
                    // `previous` ended before the window: not kept, and neither is anything
                    // older, which would otherwise seem to have lasted until now.
                    self.history.remove(user);
                }
            }
            None => {
                self.states.insert(user.into(), state);
            }
        }
        None
    }

    /// When the oldest state the table knows of for `user` was set (the current time for a
    /// user failed closed, whose history is unknown); `None` without a state.
    pub fn first_known_ms(&self, user: &str) -> Option<i64> {
        let current = self.get(user)?;
        if current.is_failed_closed() {
            return Some(crate::clock::now_ms());
        }
        let oldest = self
            .history
            .get(user)
            .and_then(|history| history.states().last());
        Some(oldest.unwrap_or(&current).updated_at_ms)
    }

    /// The `updatedAt` a record must reach to be applied.
    fn bar(&self, user: &str) -> Option<i64> {
        let stored = self.get(user)?;
        if stored.is_failed_closed() {
            return self
                .failed
                .get(user)
                .copied()
                .flatten()
                .map(|s| s.updated_at_ms);
        }
        Some(stored.updated_at_ms)
    }

    /// After a malformed record: nothing is granted, and no earlier state can be trusted.
    fn fail_closed(&mut self, user: &str) {
        self.history.remove(user);
        match self.states.get_mut(user) {
            Some(stored) if stored.is_failed_closed() => {}
            Some(stored) => {
                let valid = std::mem::replace(stored, ConsentState::FAILED_CLOSED);
                self.failed.insert(user.into(), Some(valid));
            }
            None => {
                self.states.insert(user.into(), ConsentState::FAILED_CLOSED);
                self.failed.insert(user.into(), None);
            }
        }
    }

    /// Forgets the superseded states that stopped being in force more than the history window
    /// before `now_ms`, as applying a record for their user would have (users who never
    /// change again would otherwise keep them, and a copy of their identifier, for good).
    /// Returns how many states were forgotten. Times they covered become unknown: events
    /// from then fail closed.
    pub fn sweep(&mut self, now_ms: i64) -> usize {
        let horizon = now_ms.saturating_sub(self.history_window_ms);
        let states = &self.states;
        let mut forgotten = 0;
        self.history.retain(|user, history| {
            let until = states
                .get(user.as_str())
                .map_or(i64::MAX, |s| s.updated_at_ms);
            forgotten += history.forget_ended_before(until, horizon);
            !history.is_empty()
        });
        forgotten
    }

    /// How many users have superseded states kept.
    pub fn users_with_history(&self) -> usize {
        self.history.len()
    }

    /// Forgets the user entirely (a tombstone: deletion, not a consent change).
    pub fn remove(&mut self, user: &str) {
        self.states.remove(user);
        self.history.remove(user);
        self.failed.remove(user);
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

#[cfg(test)]
mod tests;
