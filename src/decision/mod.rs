//! The decision for one event and one destination: a pure function of what the event says,
//! what the consent table says about its person, and the destination's rules. No I/O.
//! [`verdicts`] applies it now and at the event's own time.

mod law;
mod verdicts;

pub use law::{Law, LawApplied, Origin};
pub use verdicts::Verdicts;

use crate::config::{Config, MatchMode};
use crate::consent::ConsentState;
use crate::event::EventView;
use crate::vocabulary::{CategorySet, IntegrationSet, Vocabulary};

/// A destination as the decision sees it: its names and categories interned.
#[derive(Debug, Clone)]
pub struct Rule {
    pub integration_names: IntegrationSet,
    pub categories: CategorySet,
    pub match_mode: MatchMode,
    /// The bit of the destination's `channel` (empty when it has none): the stored state
    /// must show the user `subscribed` on it.
    pub channel: CategorySet,
}

impl Rule {
    /// One rule per configured destination, in config order.
    pub fn from_config(config: &Config, vocabulary: &mut Vocabulary) -> Vec<Rule> {
        config
            .destinations
            .iter()
            .map(|dest| Rule {
                integration_names: vocabulary.integration_set(&dest.integration_names()),
                categories: vocabulary.category_set(&dest.categories),
                match_mode: dest.match_mode,
                channel: dest
                    .channel
                    .as_deref()
                    .map_or(CategorySet::EMPTY, |channel| {
                        let mut bit = CategorySet::EMPTY;
                        bit.insert(vocabulary.intern_channel(channel));
                        bit
                    }),
            })
            .collect()
    }
}

/// Why an event does not go to a destination; `as_str` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The event's `integrations` object turns this destination off.
    Integrations,
    /// No consent source at all, and the law grants such a user less than the destination
    /// needs (`consent.when_missing = "deny"`, or the jurisdiction's default).
    NoConsent,
    /// The consent sources do not grant the destination's categories.
    Denied,
    /// Held for the user's first choice, which did not come within `hold.max_age`.
    HoldExpired,
    /// The destination's `channel` is not one the user's stored state shows them
    /// `subscribed` on.
    Unsubscribed,
    /// The event's `userId` or `anonymousId` is suppressed by a privacy request: it reaches
    /// no destination, strictly necessary ones included.
    Suppressed,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::Integrations,
        DropReason::NoConsent,
        DropReason::Denied,
        DropReason::HoldExpired,
        DropReason::Unsubscribed,
        DropReason::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Integrations => "integrations",
            DropReason::NoConsent => "no_consent",
            DropReason::Denied => "denied",
            DropReason::HoldExpired => "hold_expired",
            DropReason::Unsubscribed => "unsubscribed",
            DropReason::Suppressed => "suppressed",
        }
    }
}

/// The consent sources of one event, combined once and then applied to every destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grants {
    /// No source is present: the categories the law grants such a user (the jurisdiction's
    /// default, or all or none by `when_missing`).
    Missing(CategorySet),
    /// Which consent was in force is not known (a time before the history the enforcer kept,
    /// or an identifier failed closed): judged as no consent, whatever the defaults.
    Unknown,
    /// The categories every present source grants (and the stored state's other bits).
    Granted(CategorySet),
}

impl Grants {
    pub fn is_missing(&self) -> bool {
        matches!(self, Grants::Missing(_))
    }
}

/// The newer of two stored states by `updatedAt`; the `userId` one wins a tie, so a choice
/// made after login supersedes the one made before it.
pub fn person_state(
    by_user_id: Option<ConsentState>,
    by_anonymous_id: Option<ConsentState>,
) -> Option<ConsentState> {
    match (by_user_id, by_anonymous_id) {
        (Some(user), Some(anonymous)) if anonymous.updated_at_ms > user.updated_at_ms => {
            Some(anonymous)
        }
        (Some(user), _) => Some(user),
        (None, anonymous) => anonymous,
    }
}

/// When an event happened, for judging it by the consent in force then.
///
/// Its `timestamp` field (the client's clock), else the record's Kafka timestamp, else the
/// time of judging. A `timestamp` later than the record timestamp is capped at it: an event
/// cannot happen after Kafka received it, and a client clock running ahead would otherwise
/// date an event after a grant that came later (a pre-consent leak). An earlier one is taken
/// as it is, however old: the consent in force then is known from the table or it is unknown
/// (before the first state kept), which fails closed. Without a record timestamp, the time
/// of judging stands in for it.
pub fn event_time_ms(timestamp_ms: Option<i64>, record_time_ms: Option<i64>, now_ms: i64) -> i64 {
    // A record without a Kafka timestamp happened before it is judged, at the latest.
    let record = record_time_ms.unwrap_or(now_ms);
    timestamp_ms.map_or(record, |event| event.min(record))
}

/// Whether an event's `timestamp` is older than its record timestamp (else the time of
/// judging) by more than `window_ms`: replayed old data or a clock far behind, not an event
/// that happened shortly before it arrived.
pub fn dated_before_window(
    timestamp_ms: Option<i64>,
    record_time_ms: Option<i64>,
    now_ms: i64,
    window_ms: i64,
) -> bool {
    let record = record_time_ms.unwrap_or(now_ms);
    timestamp_ms.is_some_and(|event| event < record.saturating_sub(window_ms))
}

/// Deliver (`Ok`) or drop with a reason, for one destination.
pub fn decide(event: &EventView<'_>, grants: Grants, rule: &Rule) -> Result<(), DropReason> {
    let integrations = &event.integrations;
    if integrations.disabled.intersects(rule.integration_names) {
        return Err(DropReason::Integrations);
    }
    if integrations.all_false && !integrations.enabled.intersects(rule.integration_names) {
        return Err(DropReason::Integrations);
    }
    let needs_consent = !rule.categories.is_empty();
    if !needs_consent && rule.channel.is_empty() {
        return Ok(());
    }
    let allows = |granted: CategorySet| match rule.match_mode {
        MatchMode::All => granted.is_superset(rule.categories),
        MatchMode::Any => granted.intersects(rule.categories),
    };
    let granted = match grants {
        Grants::Granted(granted) => granted,
        Grants::Unknown => return Err(DropReason::NoConsent),
        Grants::Missing(defaults) if needs_consent && !allows(defaults) => {
            return Err(DropReason::NoConsent)
        }
        // No stored state: subscribed on no channel.
        Grants::Missing(_) => rule.categories,
    };
    if needs_consent && !allows(granted) {
        return Err(DropReason::Denied);
    }
    if granted.is_superset(rule.channel) {
        Ok(())
    } else {
        Err(DropReason::Unsubscribed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Integrations;

    const ANALYTICS: u8 = 0;
    const ADVERTISING: u8 = 1;

    fn set(indices: &[u8]) -> CategorySet {
        let mut set = CategorySet::EMPTY;
        for &i in indices {
            set.insert(i);
        }
        set
    }

    fn names(indices: &[u8]) -> IntegrationSet {
        let mut set = IntegrationSet::default();
        for &i in indices {
            set.insert(i);
        }
        set
    }

    fn event(integrations: Integrations) -> EventView<'static> {
        EventView {
            user_id: Some("u1".into()),
            anonymous_id: None,
            integrations,
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

    fn rule(categories: &[u8], match_mode: MatchMode) -> Rule {
        Rule {
            integration_names: names(&[0]),
            categories: set(categories),
            match_mode,
            channel: CategorySet::EMPTY,
        }
    }

    fn state(granted: &[u8], updated_at_ms: i64) -> ConsentState {
        ConsentState {
            granted: set(granted),
            updated_at_ms,
        }
    }

    fn granted(indices: &[u8]) -> Grants {
        Grants::Granted(set(indices))
    }

    #[test]
    fn granted_category_is_delivered() {
        let verdict = decide(
            &event(Integrations::default()),
            granted(&[ANALYTICS]),
            &rule(&[ANALYTICS], MatchMode::All),
        );
        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn missing_category_is_denied() {
        let verdict = decide(
            &event(Integrations::default()),
            granted(&[ADVERTISING]),
            &rule(&[ANALYTICS], MatchMode::All),
        );
        assert_eq!(verdict, Err(DropReason::Denied));
    }

    #[test]
    fn match_all_needs_every_category() {
        let both = rule(&[ANALYTICS, ADVERTISING], MatchMode::All);
        let e = event(Integrations::default());
        assert_eq!(
            decide(&e, granted(&[ANALYTICS]), &both),
            Err(DropReason::Denied)
        );
        assert_eq!(
            decide(&e, granted(&[ANALYTICS, ADVERTISING]), &both),
            Ok(())
        );
    }

    #[test]
    fn match_any_needs_one_category() {
        let either = rule(&[ANALYTICS, ADVERTISING], MatchMode::Any);
        let e = event(Integrations::default());
        assert_eq!(decide(&e, granted(&[ADVERTISING]), &either), Ok(()));
        assert_eq!(decide(&e, granted(&[]), &either), Err(DropReason::Denied));
    }

    #[test]
    fn strictly_necessary_destination_ignores_consent() {
        let necessary = rule(&[], MatchMode::All);
        let e = event(Integrations::default());
        assert_eq!(
            decide(&e, Grants::Missing(CategorySet::EMPTY), &necessary),
            Ok(())
        );
        assert_eq!(decide(&e, granted(&[]), &necessary), Ok(()));
    }

    #[test]
    fn no_consent_source_follows_when_missing() {
        let r = rule(&[ANALYTICS], MatchMode::All);
        let e = event(Integrations::default());
        assert_eq!(
            decide(&e, Grants::Missing(CategorySet::EMPTY), &r),
            Err(DropReason::NoConsent)
        );
        assert_eq!(decide(&e, Grants::Missing(set(&[ANALYTICS])), &r), Ok(()));
    }

    #[test]
    fn present_source_granting_nothing_is_denied_even_when_missing_allows() {
        let r = rule(&[ANALYTICS], MatchMode::All);
        let e = event(Integrations::default());
        assert_eq!(decide(&e, granted(&[]), &r), Err(DropReason::Denied));
    }

    #[test]
    fn integration_set_false_drops_even_strictly_necessary() {
        let disabled = Integrations {
            disabled: names(&[0]),
            ..Integrations::default()
        };
        let verdict = decide(
            &event(disabled),
            granted(&[ANALYTICS]),
            &rule(&[], MatchMode::All),
        );
        assert_eq!(verdict, Err(DropReason::Integrations));
    }

    #[test]
    fn all_false_drops_unless_integration_enabled() {
        let all_off = Integrations {
            all_false: true,
            ..Integrations::default()
        };
        let r = rule(&[ANALYTICS], MatchMode::All);
        assert_eq!(
            decide(&event(all_off), granted(&[ANALYTICS]), &r),
            Err(DropReason::Integrations)
        );
        let enabled = Integrations {
            all_false: true,
            enabled: names(&[0]),
            ..Integrations::default()
        };
        assert_eq!(decide(&event(enabled), granted(&[ANALYTICS]), &r), Ok(()));
    }

    #[test]
    fn integrations_enable_does_not_override_consent() {
        let enabled = Integrations {
            enabled: names(&[0]),
            ..Integrations::default()
        };
        let verdict = decide(
            &event(enabled),
            granted(&[]),
            &rule(&[ANALYTICS], MatchMode::All),
        );
        assert_eq!(verdict, Err(DropReason::Denied));
    }

    #[test]
    fn other_integrations_do_not_matter() {
        let other_off = Integrations {
            disabled: names(&[5]),
            ..Integrations::default()
        };
        let verdict = decide(
            &event(other_off),
            granted(&[ANALYTICS]),
            &rule(&[ANALYTICS], MatchMode::All),
        );
        assert_eq!(verdict, Ok(()));
    }

    #[test]
    fn event_time_is_never_after_the_record_time() {
        assert_eq!(event_time_ms(Some(50), Some(40), 99), 40);
        assert_eq!(event_time_ms(Some(30), Some(40), 99), 30);
        assert_eq!(event_time_ms(None, Some(40), 99), 40);
        assert_eq!(event_time_ms(Some(30), None, 99), 30);
        assert_eq!(event_time_ms(None, None, 99), 99);
    }

    #[test]
    fn without_a_record_timestamp_the_event_time_is_capped_at_the_time_of_judging() {
        assert_eq!(event_time_ms(Some(500), None, 99), 99);
    }

    #[test]
    fn an_old_timestamp_is_taken_as_it_is_and_said_to_be_dated_before_the_window() {
        assert_eq!(event_time_ms(Some(-5), Some(5_000), 0), -5);
        assert!(!dated_before_window(Some(1_000), Some(5_000), 0, 4_000));
        assert!(dated_before_window(Some(999), Some(5_000), 0, 4_000));
        assert!(dated_before_window(Some(-5), None, 99, 100));
        assert!(!dated_before_window(None, Some(5_000), 0, 0));
    }

    #[test]
    fn newer_anonymous_state_supersedes_user_state() {
        let user = state(&[ANALYTICS], 10);
        let anonymous = state(&[ADVERTISING], 20);
        assert_eq!(person_state(Some(user), Some(anonymous)), Some(anonymous));
    }

    #[test]
    fn user_state_wins_a_tie_and_when_newer() {
        let user = state(&[ANALYTICS], 20);
        assert_eq!(
            person_state(Some(user), Some(state(&[ADVERTISING], 20))),
            Some(user)
        );
        assert_eq!(
            person_state(Some(user), Some(state(&[ADVERTISING], 10))),
            Some(user)
        );
        assert_eq!(person_state(Some(user), None), Some(user));
        assert_eq!(person_state(None, Some(user)), Some(user));
        assert_eq!(person_state(None, None), None);
    }
}
