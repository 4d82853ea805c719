//! One identifier's consent over time, found by replaying all its records in arrival order
//! (README, "Consent records" and "Guarantees" 3, "No pre-consent leak").

use std::collections::BTreeSet;
use std::rc::Rc;

use super::record::Meaning;

/// One consent record as it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub meaning: Meaning,
    /// Its Kafka timestamp, or the time it was read when it has none.
    pub record_time: i64,
    /// When it was applied.
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Shared with the record it came from (states are copied often).
    pub grants: Rc<BTreeSet<String>>,
    /// `updatedAt`, capped at the record time.
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Removed,
    Stored {
        future_dated: bool,
    },
    /// Ignored; `stored` is the state re-published.
    Stale {
        stored: State,
    },
    /// Ignored while failed closed: "the failed-closed state is re-published, as a record
    /// that reads back as malformed".
    StaleWhileFailed,
    FailedClosed(&'static str),
}

/// What the identifier's state is now.
#[derive(Debug, Clone, Copy)]
pub enum Now<'a> {
    /// Never seen, or removed by a tombstone.
    Absent,
    /// Its last record that counted was malformed: present, nothing granted, newer than any.
    FailedClosed,
    State(&'a State),
}

/// What the identifier's state was at some time.
#[derive(Debug, Clone)]
pub enum At<'a> {
    /// No state now, so none at any time.
    Absent,
    /// Failed closed now: at every time. Reading: as a present state granting nothing and
    /// newer than any (judged "unknown" instead, nothing observable changes: the "now" check
    /// already denies).
    FailedClosed,
    /// Before the first recorded choice, or before the oldest state still known.
    Unknown,
    /// The last state set strictly before the time, and every state set in its millisecond.
    Known(Vec<&'a State>),
}

/// What replaying an identifier's records leaves.
#[derive(Debug, Default)]
pub struct Timeline {
    /// The last record that counted was malformed.
    failed: bool,
    /// Every state stored since the identifier was last removed or failed closed, oldest
    /// first, each with the time it was applied. Nothing is dropped here: the bounds of the
    /// history are applied when it is read (see [`Timeline::first_known`]).
    stored: Vec<(State, i64)>,
    /// The last valid state stored, kept across malformed records: the bar a record must
    /// reach not to be stale, and what a stale record makes re-published.
    last_valid: Option<State>,
}

impl Timeline {
    pub fn replay(records: &[Arrival]) -> Timeline {
        let mut timeline = Timeline::default();
        for record in records {
            timeline.apply(record);
        }
        timeline
    }

    pub fn apply(&mut self, arrival: &Arrival) -> Outcome {
        match &arrival.meaning {
            // "The user's state is removed, whatever its time."
            Meaning::Tombstone => {
                *self = Timeline::default();
                Outcome::Removed
            }
            // "Present, nothing granted ... at every time (its earlier history is forgotten)";
            // the last valid state stays the bar.
            Meaning::Malformed(reason) => {
                self.failed = true;
                self.stored.clear();
                Outcome::FailedClosed(reason)
            }
            Meaning::Valid { grants, updated_at } => {
                // Without `updatedAt` the record time stands in; a later one is capped at it.
                // Reading: staleness is judged on the capped time (the time it is applied as).
                let claimed = updated_at.unwrap_or(arrival.record_time);
                let at = claimed.min(arrival.record_time);
                if let Some(bar) = &self.last_valid {
                    if at < bar.at {
                        if self.failed {
                            return Outcome::StaleWhileFailed;
                        }
                        return Outcome::Stale {
                            stored: bar.clone(),
                        };
                    }
                }
                let state = State {
                    grants: grants.clone(),
                    at,
                };
                // "A record equal to the current state in grants and `updatedAt` ... adds
                // nothing."
                let same =
                    !self.failed && self.stored.last().is_some_and(|(last, _)| *last == state);
                self.failed = false;
                if !same {
                    self.stored.push((state.clone(), arrival.now));
                }
                self.last_valid = Some(state);
                Outcome::Stored {
                    future_dated: claimed > arrival.record_time,
                }
            }
        }
    }

    pub fn now(&self) -> Now<'_> {
        if self.failed {
            return Now::FailedClosed;
        }
        match self.stored.last() {
            Some((state, _)) => Now::State(state),
            None => Now::Absent,
        }
    }

    /// What [`Timeline::now`] answers, owned: `None` absent, `Some(None)` failed closed.
    pub fn now_owned(&self) -> Option<Option<State>> {
        match self.now() {
            Now::Absent => None,
            Now::FailedClosed => Some(None),
            Now::State(state) => Some(Some(state.clone())),
        }
    }

    /// The states in force at `time_ms` (millisecond resolution: a state set in that very
    /// millisecond cannot be ordered against the event, so every such state is a candidate
    /// together with the last one set strictly before).
    pub fn at(&self, time_ms: i64, window_ms: i64, max_changes: usize, swept_ms: i64) -> At<'_> {
        match self.now() {
            Now::Absent => return At::Absent,
            Now::FailedClosed => return At::FailedClosed,
            Now::State(_) => {}
        }
        let known = &self.stored[self.first_known(window_ms, max_changes, swept_ms)..];
        let Some((before, _)) = known.iter().rev().find(|(s, _)| s.at < time_ms) else {
            return At::Unknown;
        };
        let mut candidates = vec![before];
        candidates.extend(known.iter().map(|(s, _)| s).filter(|s| s.at == time_ms));
        At::Known(candidates)
    }

    /// Which bound made a superseded state no longer known, if any: `"window"` (measured
    /// from the last application), `"sweep"` (the window measured from a later sweep),
    /// `"changes"` or `"states"`.
    pub fn evicted_by(
        &self,
        window_ms: i64,
        max_changes: usize,
        swept_ms: i64,
    ) -> Option<&'static str> {
        self.bounds(window_ms, max_changes, swept_ms).1
    }

    /// Index of the oldest state still known. The README keeps, of the states that preceded
    /// the current one, "at most `consent.history_max_changes` changes of grants, re-sent
    /// identical choices not counted as changes but kept with their own times, at most 8 x
    /// `history_max_changes` states in all, and none that ended more than
    /// `consent.history_window` ago"; beyond them the oldest are forgotten.
    ///
    /// Reading, changes: a superseded state counts as a change unless it is a re-send of the
    /// (kept) state before it, i.e. the kept states form at most `history_max_changes` runs of
    /// equal grants. Reading, "ago": measured from the time the identifier's current state was
    /// applied or from the last sweep, whichever is later (states are forgotten when a record
    /// is applied and when the history is swept, not continuously as time passes). A state
    /// ended when the next one was set; one that ended exactly a window before is kept.
    /// Computed once here over the whole list: with "now" never going back, forgetting at
    /// every application and sweep leaves exactly what the last one's bounds leave.
    fn first_known(&self, window_ms: i64, max_changes: usize, swept_ms: i64) -> usize {
        self.bounds(window_ms, max_changes, swept_ms).0
    }

    /// [`Timeline::first_known`], and the bound that stopped it.
    fn bounds(
        &self,
        window_ms: i64,
        max_changes: usize,
        swept_ms: i64,
    ) -> (usize, Option<&'static str>) {
        let Some((_, applied)) = self.stored.last() else {
            return (0, None);
        };
        let horizon = (*applied).max(swept_ms).saturating_sub(window_ms);
        let newest_superseded = self.stored.len() - 1;
        let mut first = newest_superseded;
        let mut runs = 0;
        let mut newer: Option<&Rc<BTreeSet<String>>> = None;
        for i in (0..newest_superseded).rev() {
            let (state, _) = &self.stored[i];
            let ended = self.stored[i + 1].0.at;
            if ended < horizon {
                let by_sweep = ended >= applied.saturating_sub(window_ms);
                return (first, Some(if by_sweep { "sweep" } else { "window" }));
            }
            if newer != Some(&state.grants) {
                runs += 1;
                if runs > max_changes {
                    return (first, Some("changes"));
                }
            }
            if newest_superseded - i > 8 * max_changes {
                return (first, Some("states"));
            }
            newer = Some(&state.grants);
            first = i;
        }
        (first, None)
    }
}
