//! Every user's current consent state, keyed by user identifier (`userId` and `anonymousId`
//! share one key space).

use std::collections::HashMap;

use super::ConsentState;

#[derive(Debug, Default)]
pub struct ConsentTable {
    states: HashMap<Box<str>, ConsentState>,
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

impl ConsentTable {
    pub fn get(&self, user: &str) -> Option<ConsentState> {
        self.states.get(user).copied()
    }

    /// Stores `state` unless the stored one is newer; an equal time applies.
    pub fn apply(&mut self, user: &str, state: ConsentState) -> ApplyOutcome {
        match self.states.get_mut(user) {
            Some(stored) if stored.updated_at_ms > state.updated_at_ms => {
                ApplyOutcome::Stale { stored: *stored }
            }
            Some(stored) => {
                *stored = state;
                ApplyOutcome::Applied
            }
            None => {
                self.states.insert(user.into(), state);
                ApplyOutcome::Applied
            }
        }
    }

    /// Stores `state` whatever the stored one is: used to fail closed on a malformed record.
    pub fn overwrite(&mut self, user: &str, state: ConsentState) {
        match self.states.get_mut(user) {
            Some(stored) => *stored = state,
            None => {
                self.states.insert(user.into(), state);
            }
        }
    }

    pub fn remove(&mut self, user: &str) {
        self.states.remove(user);
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
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

    #[test]
    fn newer_and_equal_states_apply() {
        let mut table = ConsentTable::default();
        assert_eq!(table.apply("u", state(1, 10)), ApplyOutcome::Applied);
        assert_eq!(table.apply("u", state(2, 20)), ApplyOutcome::Applied);
        assert_eq!(table.apply("u", state(3, 20)), ApplyOutcome::Applied);
        assert_eq!(table.get("u"), Some(state(3, 20)));
    }

    #[test]
    fn older_state_is_stale_and_ignored() {
        let mut table = ConsentTable::default();
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
        let mut table = ConsentTable::default();
        table.apply("u", state(1, 20));
        table.overwrite("u", state(0, 5));
        assert_eq!(table.get("u"), Some(state(0, 5)));
        table.remove("u");
        assert_eq!(table.get("u"), None);
        assert!(table.is_empty());
    }
}
