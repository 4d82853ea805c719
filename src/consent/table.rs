//! Every user's consent, keyed by user identifier (`userId` and `anonymousId` share one key
//! space): the current state, and for users whose consent changed recently, the states before
//! it, so an event can be judged by the consent in force at its own time.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use std::time::{SystemTime, UNIX_EPOCH};

use super::key::UserKey;
use super::ConsentState;

#[derive(Debug)]
pub struct ConsentTable {
    states: HashMap<UserKey, ConsentState, RandomState>,
    /// Earlier states, newest first, of users whose consent changed while the enforcer ran.
    /// Each was in force from its `updated_at_ms` until the next one's.
    history: HashMap<UserKey, Vec<ConsentState>, RandomState>,
    /// Earlier states that stopped being in force longer ago than this are forgotten.
    history_window_ms: i64,
    /// At most this many earlier states are kept per user.
    history_max_changes: usize,
}

impl Default for ConsentTable {
    fn default() -> Self {
        ConsentTable::new(7 * 24 * 3_600_000, 8)
    }
}

/// What applying a state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The record was older than the stored state, which is kept.
    Stale {
        stored: ConsentState,
    },
}

/// The consent in force for a user at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateAt {
    /// This state was in force.
    Known(ConsentState),
    /// No state was in force, or the enforcer does not know which was (before the user's
    /// first recorded choice, or before the history it kept): judged as "no consent".
    None,
}

impl ConsentTable {
    pub fn new(history_window_ms: i64, history_max_changes: usize) -> ConsentTable {
        ConsentTable {
            states: HashMap::default(),
            history: HashMap::default(),
            history_window_ms,
            history_max_changes,
        }
    }

    pub fn get(&self, user: &str) -> Option<ConsentState> {
        self.states.get(user).copied()
    }

    /// The state in force for `user` at `time_ms`: the last one set strictly before it. Times
    /// have millisecond resolution, so a state set in the event's own millisecond is not known
    /// to precede the event: the event is judged by the state before it, and (by the caller)
    /// by the current one, so a tie fails closed.
    pub fn state_at(&self, user: &str, time_ms: i64) -> StateAt {
        let Some(current) = self.states.get(user) else {
            return StateAt::None;
        };
        if current.updated_at_ms < time_ms {
            return StateAt::Known(*current);
        }
        self.history
            .get(user)
            .and_then(|earlier| earlier.iter().find(|s| s.updated_at_ms < time_ms))
            .map_or(StateAt::None, |s| StateAt::Known(*s))
    }

    /// Stores `state` unless the stored one is newer; an equal time applies.
    pub fn apply(&mut self, user: &str, state: ConsentState) -> ApplyOutcome {
        match self.states.get_mut(user) {
            Some(stored) if stored.updated_at_ms > state.updated_at_ms => {
                ApplyOutcome::Stale { stored: *stored }
            }
            Some(stored) => {
                let previous = std::mem::replace(stored, state);
                if previous.updated_at_ms < state.updated_at_ms {
                    self.remember(user, previous, state.updated_at_ms);
                }
                ApplyOutcome::Applied
            }
            None => {
                self.states.insert(user.into(), state);
                ApplyOutcome::Applied
            }
        }
    }

    /// Stores `state` whatever the stored one is, forgetting the user's history: used to fail
    /// closed on a malformed record, after which no earlier state can be trusted.
    pub fn overwrite(&mut self, user: &str, state: ConsentState) {
        self.history.remove(user);
        match self.states.get_mut(user) {
            Some(stored) => *stored = state,
            None => {
                self.states.insert(user.into(), state);
            }
        }
    }

    /// Forgets the user entirely (a tombstone: deletion, not a consent change).
    pub fn remove(&mut self, user: &str) {
        self.states.remove(user);
        self.history.remove(user);
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Keeps `previous`, in force until `until_ms`, in the user's history.
    fn remember(&mut self, user: &str, previous: ConsentState, until_ms: i64) {
        let horizon = now_ms() - self.history_window_ms;
        if until_ms < horizon || self.history_max_changes == 0 {
            return;
        }
        let earlier = self.history.entry(user.into()).or_default();
        // A re-sent choice (same grants) adds nothing to know: the newest kept state already
        // covers its time.
        if earlier
            .first()
            .is_some_and(|newest| newest.granted == previous.granted)
        {
            return;
        }
        earlier.insert(0, previous);
        earlier.truncate(self.history_max_changes);
        // An entry ends where the one before it in the list (newer) begins.
        let mut end = until_ms;
        let mut keep = earlier.len();
        for (i, state) in earlier.iter().enumerate() {
            if end < horizon {
                keep = i;
                break;
            }
            end = state.updated_at_ms;
        }
        earlier.truncate(keep);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::CategorySet;

    fn state(bits: u64, updated_at_ms: i64) -> ConsentState {
        ConsentState {
            granted: CategorySet::from_bits(bits),
            updated_at_ms,
        }
    }

    /// A table whose window reaches back to the epoch, so fixed small times stay in it.
    fn table() -> ConsentTable {
        ConsentTable::new(i64::MAX / 2, 4)
    }

    #[test]
    fn newer_and_equal_states_apply() {
        let mut table = table();
        assert_eq!(table.apply("u", state(1, 10)), ApplyOutcome::Applied);
        assert_eq!(table.apply("u", state(2, 20)), ApplyOutcome::Applied);
        assert_eq!(table.apply("u", state(3, 20)), ApplyOutcome::Applied);
        assert_eq!(table.get("u"), Some(state(3, 20)));
    }

    #[test]
    fn older_state_is_stale_and_ignored() {
        let mut table = table();
        table.apply("u", state(1, 20));
        assert_eq!(
            table.apply("u", state(2, 10)),
            ApplyOutcome::Stale {
                stored: state(1, 20)
            }
        );
        assert_eq!(table.get("u"), Some(state(1, 20)));
    }

    #[test]
    fn overwrite_and_remove_ignore_time() {
        let mut table = table();
        table.apply("u", state(1, 20));
        table.overwrite("u", state(0, 5));
        assert_eq!(table.get("u"), Some(state(0, 5)));
        table.remove("u");
        assert_eq!(table.get("u"), None);
        assert!(table.is_empty());
    }

    #[test]
    fn state_at_a_time_follows_the_history() {
        let mut table = table();
        table.apply("u", state(1, 10));
        table.apply("u", state(2, 20));
        table.apply("u", state(3, 30));
        assert_eq!(table.state_at("u", 5), StateAt::None);
        assert_eq!(table.state_at("u", 11), StateAt::Known(state(1, 10)));
        assert_eq!(table.state_at("u", 25), StateAt::Known(state(2, 20)));
        assert_eq!(table.state_at("u", 99), StateAt::Known(state(3, 30)));
        assert_eq!(table.state_at("nobody", 99), StateAt::None);
    }

    #[test]
    fn state_set_in_the_events_millisecond_is_not_known_to_precede_it() {
        let mut table = table();
        assert_eq!(table.apply("u", state(0, 10)), ApplyOutcome::Applied);
        table.apply("u", state(1, 20));
        assert_eq!(table.state_at("u", 10), StateAt::None);
        assert_eq!(table.state_at("u", 20), StateAt::Known(state(0, 10)));
        assert_eq!(table.state_at("u", 21), StateAt::Known(state(1, 20)));
    }

    #[test]
    fn history_keeps_a_bounded_number_of_changes() {
        let mut table = ConsentTable::new(i64::MAX / 2, 2);
        for t in 1..=5 {
            table.apply("u", state(t as u64, t * 10));
        }
        assert_eq!(table.state_at("u", 35), StateAt::Known(state(3, 30)));
        assert_eq!(table.state_at("u", 25), StateAt::None);
    }

    #[test]
    fn history_forgets_states_that_ended_before_the_window() {
        let now = now_ms();
        let mut table = ConsentTable::new(1_000, 4);
        table.apply("u", state(1, now - 10_000));
        table.apply("u", state(2, now - 5_000));
        table.apply("u", state(3, now));
        // The state from -5 s ended now: kept. The one from -10 s ended at -5 s: forgotten.
        assert_eq!(
            table.state_at("u", now - 1),
            StateAt::Known(state(2, now - 5_000))
        );
        assert_eq!(table.state_at("u", now - 6_000), StateAt::None);
    }

    #[test]
    fn re_sent_identical_choices_do_not_use_up_the_history() {
        let mut table = ConsentTable::new(i64::MAX / 2, 2);
        table.apply("u", state(1, 10));
        table.apply("u", state(2, 20));
        for t in 3..10 {
            table.apply("u", state(2, t * 10));
        }
        table.apply("u", state(3, 100));
        assert_eq!(table.state_at("u", 15), StateAt::Known(state(1, 10)));
        assert_eq!(table.state_at("u", 55), StateAt::Known(state(2, 20)));
    }

    #[test]
    fn overwrite_forgets_the_history() {
        let mut table = table();
        table.apply("u", state(1, 10));
        table.apply("u", state(2, 20));
        table.overwrite("u", state(0, 30));
        assert_eq!(table.state_at("u", 15), StateAt::None);
    }
}
