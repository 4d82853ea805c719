//! Now and at the event's time: an event is delivered only if the consent stored now and the
//! consent in force at the event's own time both allow it. Consent given after the event
//! does not reach back to it, and consent withdrawn since the event wins.

use super::{decide, person_state, DropReason, Grants, Law, Rule};
use crate::consent::{ConsentState, ConsentTable, StatesAt};
use crate::event::EventView;

/// The consent sources of one event now and at its own time, combined once and then applied
/// to every destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdicts {
    now: Grants,
    then: Then,
    /// An identifier of the event is suppressed (now, or at the event's time).
    suppressed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Then {
    /// The consent in force at the event's time is the current one.
    Now,
    One(Grants),
    /// Several states may have been in force (set in the event's own millisecond): every
    /// one must allow.
    Each(Vec<Grants>),
}

impl Verdicts {
    pub fn new(
        table: &ConsentTable,
        view: &EventView<'_>,
        event_time_ms: i64,
        law: &Law,
    ) -> Verdicts {
        let user_id = view.user_id.as_deref();
        let anonymous_id = view.anonymous_id.as_deref();
        let suppressed = [user_id, anonymous_id]
            .into_iter()
            .flatten()
            .any(|id| table.suppressed(id, event_time_ms));
        let lookup = |id: Option<&str>| id.and_then(|id| table.get(id));
        let (user_now, anonymous_now) = (lookup(user_id), lookup(anonymous_id));
        let now = law.grants(person_state(user_now, anonymous_now), view);
        let current_then = [user_now, anonymous_now]
            .iter()
            .all(|state| state.is_none_or(|s| s.updated_at_ms < event_time_ms));
        if current_then {
            return Verdicts {
                now,
                then: Then::Now,
                suppressed,
            };
        }
        let at =
            |id: Option<&str>| id.map_or(StatesAt::Absent, |id| table.states_at(id, event_time_ms));
        let then = match (at(user_id), at(anonymous_id)) {
            (StatesAt::Unknown, _) | (_, StatesAt::Unknown) => Then::One(Grants::Unknown),
            (by_user_id, by_anonymous_id) => {
                let mut each: Vec<Grants> = Vec::new();
                for user in candidates(by_user_id) {
                    for anonymous in candidates(by_anonymous_id) {
                        let grants = law.grants(person_state(user, anonymous), view);
                        if !each.contains(&grants) {
                            each.push(grants);
                        }
                    }
                }
                match each.as_slice() {
                    [one] => Then::One(*one),
                    _ => Then::Each(each),
                }
            }
        };
        Verdicts {
            now,
            then,
            suppressed,
        }
    }

    /// Whether an identifier of the event is suppressed by a privacy request.
    pub fn suppressed(&self) -> bool {
        self.suppressed
    }

    /// The consent sources now, before the consent at the event's time is asked.
    pub fn now(&self) -> Grants {
        self.now
    }

    /// The consent sources at the event's time: `None` when they are those of now; else
    /// every combination that may have been in force.
    pub fn then(&self) -> Option<Vec<Grants>> {
        match &self.then {
            Then::Now => None,
            Then::One(one) => Some(vec![*one]),
            Then::Each(each) => Some(each.clone()),
        }
    }

    /// Deliver (`Ok`) or drop, for one destination: the reason is that of the first check
    /// that fails, now first.
    pub fn decide(&self, view: &EventView<'_>, rule: &Rule) -> Result<(), DropReason> {
        if self.suppressed {
            return Err(DropReason::Suppressed);
        }
        decide(view, self.now, rule)?;
        match &self.then {
            Then::Now => Ok(()),
            Then::One(then) => decide(view, *then, rule),
            // Of the states that may have been in force, a failed consent check is the reason
            // before a failed channel check, whatever their order.
            Then::Each(each) => each
                .iter()
                .filter_map(|then| decide(view, *then, rule).err())
                .min_by_key(|reason| *reason == DropReason::Unsubscribed)
                .map_or(Ok(()), Err),
        }
    }
}

/// The states an identifier may have had (`None`: it had none).
fn candidates(states: StatesAt<'_>) -> Vec<Option<ConsentState>> {
    match states {
        StatesAt::Known(candidates) => candidates.iter().map(Some).collect(),
        StatesAt::Absent | StatesAt::Unknown => vec![None],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MatchMode;
    use crate::config::WhenMissing;
    use crate::consent::ConsentUpdate;
    use crate::event::Integrations;
    use crate::vocabulary::{CategorySet, IntegrationSet, Vocabulary};

    fn law(when_missing: WhenMissing) -> Law {
        let mut vocabulary = Vocabulary::default();
        vocabulary.intern_category("analytics");
        vocabulary.intern_category("advertising");
        Law::when_missing(when_missing, &vocabulary)
    }

    const ANALYTICS: u64 = 0b01;
    const ADVERTISING: u64 = 0b10;
    const NOW: i64 = 10_000_000;

    fn table(records: &[(&str, u64, i64)]) -> ConsentTable {
        let mut table = ConsentTable::new(i64::MAX / 2, 8);
        for &(user, bits, at) in records {
            let state = ConsentState {
                granted: CategorySet::from_bits(bits),
                updated_at_ms: at,
            };
            table.apply_record(user, Ok(ConsentUpdate::Set(state)), NOW, NOW);
        }
        table
    }

    fn event(
        user_id: Option<&'static str>,
        anonymous_id: Option<&'static str>,
    ) -> EventView<'static> {
        EventView {
            user_id: user_id.map(Into::into),
            anonymous_id: anonymous_id.map(Into::into),
            integrations: Integrations::default(),
            stamp: None,
            managed: None,
            timestamp_ms: None,
            unknown_names: 0,
            gpc: false,
            location: None,
            preference_update: false,
            message_id: None,
        }
    }

    fn rule(bits: u64) -> Rule {
        Rule {
            integration_names: IntegrationSet::default(),
            categories: CategorySet::from_bits(bits),
            match_mode: MatchMode::All,
            channel: CategorySet::EMPTY,
        }
    }

    fn verdict(
        table: &ConsentTable,
        view: &EventView<'_>,
        at: i64,
        bits: u64,
    ) -> Result<(), DropReason> {
        Verdicts::new(table, view, at, &law(WhenMissing::Deny)).decide(view, &rule(bits))
    }

    #[test]
    fn an_identifier_too_long_to_store_fails_the_event_closed_whatever_the_other_grants() {
        let long: &'static str = Box::leak("u".repeat(513).into_boxed_str());
        let table = table(&[("a", ANALYTICS, 0)]);
        let view = event(Some(long), Some("a"));
        assert!(verdict(&table, &view, 90_000, ANALYTICS).is_err());
        // Even with every source allowing a missing state.
        let allow = Verdicts::new(&table, &view, 90_000, &law(WhenMissing::Allow))
            .decide(&view, &rule(ANALYTICS));
        assert!(allow.is_err());
        // A destination that needs no consent still gets it.
        assert_eq!(verdict(&table, &view, 90_000, 0), Ok(()));
    }

    #[test]
    fn a_re_sent_choice_keeps_the_user_state_winning_the_tie_at_the_events_time() {
        // The user re-sends {advertising} at 60 s; the anonymous state grants analytics at
        // 60 s; the user state wins the tie, so analytics is denied between 60 s and 120 s.
        let table = table(&[
            ("u", ADVERTISING, 0),
            ("u", ADVERTISING, 60_000),
            ("a", ANALYTICS, 60_000),
            ("u", ANALYTICS, 120_000),
        ]);
        let view = event(Some("u"), Some("a"));
        assert_eq!(
            verdict(&table, &view, 90_000, ANALYTICS),
            Err(DropReason::Denied)
        );
        assert_eq!(verdict(&table, &view, 130_000, ANALYTICS), Ok(()));
    }

    #[test]
    fn an_unknown_state_at_the_events_time_is_no_consent_even_if_the_other_identifier_grants() {
        let table = table(&[("a", ANALYTICS, 0), ("u", ANALYTICS, 50_000)]);
        let view = event(Some("u"), Some("a"));
        assert_eq!(
            verdict(&table, &view, 20_000, ANALYTICS),
            Err(DropReason::NoConsent)
        );
        let allow = Verdicts::new(&table, &view, 20_000, &law(WhenMissing::Allow))
            .decide(&view, &rule(ANALYTICS));
        assert_eq!(allow, Err(DropReason::NoConsent));
    }

    #[test]
    fn an_old_event_is_judged_by_the_state_in_force_then_or_fails_closed_before_it() {
        // Granted at 1 s and never changed: an event from 2 s is judged by that grant, one
        // from before it (pre-consent, or a clock far behind) by no consent.
        let table = table(&[("u", ANALYTICS, 1_000)]);
        let view = event(Some("u"), None);
        assert_eq!(verdict(&table, &view, 2_000, ANALYTICS), Ok(()));
        assert_eq!(
            verdict(&table, &view, 500, ANALYTICS),
            Err(DropReason::NoConsent)
        );
        assert_eq!(
            verdict(&table, &view, i64::MIN, ANALYTICS),
            Err(DropReason::NoConsent)
        );
    }

    #[test]
    fn a_change_in_the_events_millisecond_is_consulted_even_when_superseded() {
        let table = table(&[
            ("u", ANALYTICS, 0),
            ("u", 0, 1_000),
            ("u", ANALYTICS, 2_000),
        ]);
        let view = event(Some("u"), None);
        assert_eq!(
            verdict(&table, &view, 1_000, ANALYTICS),
            Err(DropReason::Denied)
        );
        assert_eq!(verdict(&table, &view, 999, ANALYTICS), Ok(()));
        assert_eq!(verdict(&table, &view, 2_001, ANALYTICS), Ok(()));
    }

    #[test]
    fn a_malformed_record_never_widens_what_the_person_receives() {
        // The user's newer state denied analytics; the anonymous state granted it earlier.
        let mut table = table(&[("a", ANALYTICS, 0), ("u", 0, 10_000)]);
        let view = event(Some("u"), Some("a"));
        assert_eq!(
            verdict(&table, &view, 20_000, ANALYTICS),
            Err(DropReason::Denied)
        );
        // A malformed record for the user, with a Kafka timestamp older than both.
        table.apply_record("u", Err(crate::consent::Rejection::NotJson), 1, NOW);
        for at in [5, 5_000, 20_000, NOW] {
            assert!(verdict(&table, &view, at, ANALYTICS).is_err(), "at {at}");
        }
    }

    #[test]
    fn strictly_necessary_destinations_do_not_ask_the_history() {
        let table = table(&[("u", ANALYTICS, 50_000)]);
        let view = event(Some("u"), None);
        assert_eq!(verdict(&table, &view, 20_000, 0), Ok(()));
    }
}
