//! The README's "The decision": how an event value is classified (the malformed events table,
//! in its order) and what the decision reads from a valid one (identifiers, the consent stamp,
//! `timestamp`, `integrations`).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use consent_enforcer::event::{self, EventView};
use consent_enforcer::vocabulary::{CategorySet, IntegrationSet, Vocabulary};

use super::json::{self, Json};
use super::{rfc3339, show};

/// The configuration events are judged against: a few categories and integration names, one
/// of each with a character that clients may send escaped.
pub const CATEGORIES: [&str; 3] = ["analytics", "advertising", "données"];
pub const INTEGRATIONS: [&str; 3] = ["Amplitude", "Google Ads", "Café"];
/// A destination's `channel`.
pub const CHANNEL: &str = "email";
/// `[consent.aliases]`: CMP IDs standing for categories (the last for one not configured).
pub const ALIASES: [(&str, &str); 3] = [
    ("C0002", "analytics"),
    ("C0004", "advertising"),
    ("C0003", "functional"),
];
pub const MAX_EVENT_BYTES: usize = 1_000_000;

/// Top-level fields whose duplicates are `duplicate_key`. The README lists the first four;
/// `src` also checks `timestamp`, which the decision reads too (issue 14: the README should
/// list it, or `src` stop checking it). The oracle follows `src` until one of them changes.
const READ_AT_TOP: [&str; 5] = [
    "userId",
    "anonymousId",
    "integrations",
    "context",
    "timestamp",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The reason, as the `consent-enforcer-error` header has it.
    Malformed(&'static str),
    Valid(View),
}

/// What the decision reads from a valid event, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// `context.consent.categoryPreferences`: present whenever that field exists; the
    /// configured categories that are exactly JSON `true` (none if it is not an object).
    pub stamp: Option<BTreeSet<&'static str>>,
    /// `context.consentManagement`: present whenever that field exists; the configured
    /// categories an entry of `allowedConsentIds` names and no entry of `deniedConsentIds`
    /// does (none if it is not an object).
    pub managed: Option<BTreeSet<&'static str>>,
    /// `context.gpc` is `true`.
    pub gpc: bool,
    pub timestamp_ms: Option<i64>,
    /// `integrations.All` is `false`.
    pub all_false: bool,
    /// Configured names that are `false`.
    pub disabled: BTreeSet<&'static str>,
    /// Configured names that are `true` or an object.
    pub enabled: BTreeSet<&'static str>,
}

/// The README's classification; `None` where the oracle has no opinion (nested deeper than
/// [`json::MAX_DEPTH`]).
pub fn classify(value: Option<&[u8]>, max_bytes: usize) -> Option<Outcome> {
    let Some(bytes) = value else {
        return Some(Outcome::Malformed("null_value"));
    };
    if bytes.len() > max_bytes {
        return Some(Outcome::Malformed("too_large"));
    }
    let event = match json::parse(bytes) {
        Ok(event) => event,
        Err(json::Error::Invalid) => return Some(Outcome::Malformed("not_json")),
        Err(json::Error::TooDeep) => return None,
    };
    if !matches!(event, Json::Object(_)) {
        return Some(Outcome::Malformed("not_object"));
    }
    if has_duplicate(&event) {
        return Some(Outcome::Malformed("duplicate_key"));
    }
    let view = read(&event);
    if view.user_id.is_none() && view.anonymous_id.is_none() {
        return Some(Outcome::Malformed("no_identifier"));
    }
    Some(Outcome::Valid(view))
}

/// A key appears twice among the fields the decision reads.
fn has_duplicate(event: &Json) -> bool {
    if READ_AT_TOP.iter().any(|key| event.repeats(key)) {
        return true;
    }
    if let Some(integrations) = event.get("integrations") {
        if INTEGRATIONS
            .iter()
            .chain(&["All"])
            .any(|name| integrations.repeats(name))
        {
            return true;
        }
    }
    let Some(context) = event.get("context") else {
        return false;
    };
    // `gpc` and `location` are read only where jurisdictions are declared (none here).
    if context.repeats("consent") || context.repeats("consentManagement") {
        return true;
    }
    if let Some(managed) = context.get("consentManagement") {
        if managed.repeats("allowedConsentIds") || managed.repeats("deniedConsentIds") {
            return true;
        }
    }
    let Some(consent) = context.get("consent") else {
        return false;
    };
    if consent.repeats("categoryPreferences") {
        return true;
    }
    let Some(preferences) = consent.get("categoryPreferences") else {
        return false;
    };
    preference_names().any(|name| preferences.repeats(name))
}

/// Every name read in consent preferences: the categories and the aliases.
pub fn preference_names() -> impl Iterator<Item = &'static str> {
    CATEGORIES
        .into_iter()
        .chain(ALIASES.into_iter().map(|(alias, _)| alias))
}

/// The names of a category: itself and its aliases.
pub fn names_of(category: &'static str) -> impl Iterator<Item = &'static str> {
    std::iter::once(category).chain(
        ALIASES
            .into_iter()
            .filter(move |(_, c)| *c == category)
            .map(|(alias, _)| alias),
    )
}

/// Reads an object without duplicates among the fields read.
fn read(event: &Json) -> View {
    // Only non-empty strings are identifiers; any other type counts as absent.
    let identifier = |key| match event.get(key) {
        Some(Json::String(id)) if !id.is_empty() => Some(id.clone()),
        _ => None,
    };
    let stamp = event
        .get("context")
        .and_then(|context| context.get("consent"))
        .and_then(|consent| consent.get("categoryPreferences"))
        .map(|preferences| {
            // Granted when a name of it is there and every one there is `true`.
            CATEGORIES
                .into_iter()
                .filter(|category| {
                    let values: Vec<&Json> = names_of(category)
                        .filter_map(|name| preferences.get(name))
                        .collect();
                    !values.is_empty() && values.iter().all(|v| **v == Json::Bool(true))
                })
                .collect()
        });
    let managed = event
        .get("context")
        .and_then(|context| context.get("consentManagement"))
        .map(|managed| {
            let named = |key: &str| -> BTreeSet<&'static str> {
                let Some(Json::Array(ids)) = managed.get(key) else {
                    return BTreeSet::new();
                };
                CATEGORIES
                    .into_iter()
                    .filter(|category| {
                        names_of(category)
                            .any(|name| ids.iter().any(|id| *id == Json::String(name.into())))
                    })
                    .collect()
            };
            let denied = named("deniedConsentIds");
            named("allowedConsentIds")
                .into_iter()
                .filter(|c| !denied.contains(c))
                .collect()
        });
    let timestamp_ms = match event.get("timestamp") {
        Some(Json::String(text)) => rfc3339::to_unix_ms(text),
        _ => None,
    };
    let mut view = View {
        user_id: identifier("userId"),
        anonymous_id: identifier("anonymousId"),
        stamp,
        managed,
        gpc: event.get("context").and_then(|context| context.get("gpc")) == Some(&Json::Bool(true)),
        timestamp_ms,
        ..View::default()
    };
    if let Some(integrations @ Json::Object(_)) = event.get("integrations") {
        view.all_false = integrations.get("All") == Some(&Json::Bool(false));
        for name in INTEGRATIONS {
            match integrations.get(name) {
                Some(Json::Bool(false)) => {
                    view.disabled.insert(name);
                }
                Some(Json::Bool(true) | Json::Object(_)) => {
                    view.enabled.insert(name);
                }
                _ => {}
            }
        }
    }
    view
}

pub fn vocabulary() -> &'static Vocabulary {
    static VOCABULARY: OnceLock<Vocabulary> = OnceLock::new();
    VOCABULARY.get_or_init(|| {
        let mut vocabulary = Vocabulary::default();
        for category in CATEGORIES {
            vocabulary.intern_category(category);
        }
        for name in INTEGRATIONS {
            vocabulary.intern_integration(name);
        }
        vocabulary.intern_channel(CHANNEL);
        for (alias, category) in ALIASES {
            vocabulary.add_alias(alias, category);
        }
        vocabulary
    })
}

/// A view in the terms `src` uses (bit sets), so that a stray bit shows.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    user_id: Option<String>,
    anonymous_id: Option<String>,
    stamp: Option<CategorySet>,
    managed: Option<CategorySet>,
    gpc: bool,
    timestamp_ms: Option<i64>,
    all_false: bool,
    disabled: IntegrationSet,
    enabled: IntegrationSet,
}

impl Observed {
    fn of_src(view: &EventView<'_>) -> Observed {
        Observed {
            user_id: view.user_id.as_deref().map(str::to_owned),
            anonymous_id: view.anonymous_id.as_deref().map(str::to_owned),
            stamp: view.stamp,
            managed: view.managed,
            gpc: view.gpc,
            timestamp_ms: view.timestamp_ms,
            all_false: view.integrations.all_false,
            disabled: view.integrations.disabled,
            enabled: view.integrations.enabled,
        }
    }

    fn of_oracle(view: &View) -> Observed {
        let vocabulary = vocabulary();
        let bits = |names: &BTreeSet<&str>| {
            let mut set = CategorySet::EMPTY;
            for name in names {
                set.insert(vocabulary.category(name).expect("a configured category"));
            }
            set
        };
        let integrations = |names: &BTreeSet<&str>| {
            let mut set = IntegrationSet::default();
            for name in names {
                set.insert(vocabulary.integration(name).expect("a configured name"));
            }
            set
        };
        Observed {
            user_id: view.user_id.clone(),
            anonymous_id: view.anonymous_id.clone(),
            stamp: view.stamp.as_ref().map(bits),
            managed: view.managed.as_ref().map(bits),
            gpc: view.gpc,
            timestamp_ms: view.timestamp_ms,
            all_false: view.all_false,
            disabled: integrations(&view.disabled),
            enabled: integrations(&view.enabled),
        }
    }
}

/// Runs `event::parse` on one input, as a value, as a null value and over the size limit, and
/// panics if it disagrees with the README.
pub fn check(data: &[u8]) {
    let vocabulary = vocabulary();
    assert_eq!(
        event::parse(None, MAX_EVENT_BYTES, vocabulary).map_err(|m| m.as_str()),
        Err("null_value")
    );
    if let Some(limit) = data.len().checked_sub(1) {
        assert_eq!(
            event::parse(Some(data), limit, vocabulary).map_err(|m| m.as_str()),
            Err("too_large"),
            "event {} with input.max_event_bytes one below its size",
            show(data)
        );
    }
    let actual = event::parse(Some(data), MAX_EVENT_BYTES, vocabulary);
    let Some(expected) = classify(Some(data), MAX_EVENT_BYTES) else {
        return;
    };
    let agree = match (&expected, &actual) {
        (Outcome::Malformed(reason), Err(malformed)) => *reason == malformed.as_str(),
        (Outcome::Valid(view), Ok(actual)) => Observed::of_oracle(view) == Observed::of_src(actual),
        _ => false,
    };
    assert!(
        agree,
        "event {}\n  README: {expected:?}\n  src:    {actual:?}",
        show(data)
    );
}
