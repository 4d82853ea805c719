//! The states a user's current one superseded, kept to judge late events by the consent in
//! force at their own time.
//!
//! Nothing is collapsed: a re-sent choice (the same grants again) is kept with its own
//! `updatedAt`, because the newer-of-`userId`-and-`anonymousId` comparison at an event's time
//! needs the exact time of the state in force then. Re-sent choices are not counted as
//! changes against `consent.history_max_changes`; all kept states together are bounded by
//! [`MAX_STATES_PER_CHANGE`] times that number. What is evicted is not forgotten as "no
//! state": times before the oldest kept state are unknown, and judged as no consent.

use super::ConsentState;

/// Bound on all kept states of one user (re-sent choices included), per change allowed.
pub const MAX_STATES_PER_CHANGE: usize = 8;

/// Earlier states of one user, newest first. Each was in force from its `updated_at_ms` until
/// the next newer one's (the newest until the current state's).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct History(Vec<ConsentState>);

impl History {
    pub fn states(&self) -> &[ConsentState] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps `previous`, superseded by a state set at `until_ms`, then evicts what the bounds
    /// no longer allow: states that stopped being in force before `horizon_ms`, and states
    /// beyond `max_changes` changes of grants (or beyond the bound on all kept states).
    pub fn supersede(
        &mut self,
        previous: ConsentState,
        until_ms: i64,
        horizon_ms: i64,
        max_changes: usize,
    ) {
        self.0.insert(0, previous);
        let max_states = max_changes.saturating_mul(MAX_STATES_PER_CHANGE);
        let mut keep = 0;
        let mut changes = 0;
        let mut end = until_ms;
        let mut newer_granted = None;
        for state in &self.0 {
            if end < horizon_ms || keep >= max_states {
                break;
            }
            if newer_granted != Some(state.granted) {
                changes += 1;
                if changes > max_changes {
                    break;
                }
            }
            newer_granted = Some(state.granted);
            end = state.updated_at_ms;
            keep += 1;
        }
        self.0.truncate(keep);
    }

    /// Forgets the states that stopped being in force before `horizon_ms`, the newest having
    /// been superseded at `until_ms`; returns how many were forgotten.
    pub fn forget_ended_before(&mut self, until_ms: i64, horizon_ms: i64) -> usize {
        let mut end = until_ms;
        let keep = self
            .0
            .iter()
            .take_while(|state| {
                let in_window = end >= horizon_ms;
                end = state.updated_at_ms;
                in_window
            })
            .count();
        let forgotten = self.0.len() - keep;
        self.0.truncate(keep);
        forgotten
    }
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

    fn times(history: &History) -> Vec<i64> {
        history.states().iter().map(|s| s.updated_at_ms).collect()
    }

    #[test]
    fn newest_superseded_state_comes_first() {
        let mut history = History::default();
        history.supersede(state(1, 10), 20, i64::MIN, 4);
        history.supersede(state(2, 20), 30, i64::MIN, 4);
        assert_eq!(times(&history), [20, 10]);
    }

    #[test]
    fn re_sent_choices_keep_their_own_times_and_are_not_counted_as_changes() {
        let mut history = History::default();
        history.supersede(state(1, 10), 20, i64::MIN, 2);
        for t in 2..9 {
            history.supersede(state(2, t * 10), t * 10 + 10, i64::MIN, 2);
        }
        // Two changes (1, then 2 re-sent seven times) fit a bound of two changes.
        assert_eq!(times(&history), [80, 70, 60, 50, 40, 30, 20, 10]);
    }

    #[test]
    fn a_change_beyond_the_bound_evicts_the_oldest() {
        let mut history = History::default();
        for t in 1..=4 {
            history.supersede(state(t as u64, t * 10), t * 10 + 10, i64::MIN, 2);
        }
        assert_eq!(times(&history), [40, 30]);
    }

    #[test]
    fn all_kept_states_are_bounded_too() {
        let mut history = History::default();
        for t in 1..=100 {
            history.supersede(state(1, t), t + 1, i64::MIN, 1);
        }
        assert_eq!(history.states().len(), MAX_STATES_PER_CHANGE);
        assert_eq!(history.states()[0].updated_at_ms, 100);
    }

    #[test]
    fn states_that_ended_before_the_horizon_are_evicted() {
        let mut history = History::default();
        history.supersede(state(1, 10), 20, i64::MIN, 4);
        history.supersede(state(2, 20), 30, 25, 4);
        // The state from 20 ended at 30 (kept); the one from 10 ended at 20, before 25.
        assert_eq!(times(&history), [20]);
    }

    #[test]
    fn forgetting_by_a_later_horizon_drops_the_states_that_ended_before_it() {
        let mut history = History::default();
        history.supersede(state(1, 10), 20, i64::MIN, 4);
        history.supersede(state(2, 20), 30, i64::MIN, 4);
        history.supersede(state(3, 30), 40, i64::MIN, 4);
        // Ended at 40, 30 and 20: a horizon of 30 keeps the first two.
        assert_eq!(history.forget_ended_before(40, 30), 1);
        assert_eq!(times(&history), [30, 20]);
        assert_eq!(history.forget_ended_before(40, 41), 2);
        assert!(history.is_empty());
    }

    #[test]
    fn no_changes_allowed_keeps_nothing() {
        let mut history = History::default();
        history.supersede(state(1, 10), 20, i64::MIN, 0);
        assert!(history.is_empty());
    }
}
