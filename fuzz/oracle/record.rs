//! The README's "Consent records": what a record's key and value ask of the table, and that a
//! re-published state reads back as itself.
//!
//! Fuzz input: the key, a newline, then the value; without a newline the whole input is the
//! key and the value is null (a tombstone).

use std::collections::BTreeSet;

use consent_enforcer::consent::record::{encode_value, parse_key, parse_value};
use consent_enforcer::consent::{ConsentState, ConsentUpdate};
use consent_enforcer::vocabulary::CategorySet;

use super::event::{names_of, preference_names, vocabulary, CATEGORIES, CHANNEL};
use super::json::{self, Json};
use super::{rfc3339, show};

/// The Kafka timestamp of the fuzzed records, standing in for a missing `updatedAt`.
pub const RECORD_TIME_MS: i64 = 1_795_341_600_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Remove,
    Set {
        granted: BTreeSet<&'static str>,
        updated_at_ms: i64,
    },
    /// The `reason` label of `consent_records_rejected_total`.
    Rejected(&'static str),
}

/// A key is a user only if it is present, UTF-8 and at most 512 bytes long (README,
/// "Consent records": a longer key is `key_too_long`).
pub fn classify_key(key: Option<&[u8]>) -> Result<&str, &'static str> {
    let key = key
        .and_then(|key| std::str::from_utf8(key).ok())
        .ok_or("bad_key")?;
    if key.len() > 512 {
        return Err("key_too_long");
    }
    Ok(key)
}

/// The README's table; `None` where the oracle has no opinion (too deep).
pub fn classify_value(value: Option<&[u8]>, record_time_ms: i64) -> Option<Outcome> {
    let Some(bytes) = value else {
        return Some(Outcome::Remove);
    };
    let record = match json::parse(bytes) {
        Ok(record) => record,
        Err(json::Error::Invalid) => return Some(Outcome::Rejected("not_json")),
        Err(json::Error::TooDeep) => return None,
    };
    if !matches!(record, Json::Object(_)) {
        return Some(Outcome::Rejected("not_object"));
    }
    // "duplicate field": among the fields read, as for events.
    let preferences = record.get("categoryPreferences");
    let subscriptions = record.get("subscriptions");
    if record.repeats("categoryPreferences")
        || record.repeats("updatedAt")
        // A channel is configured; jurisdictions are not (`jurisdiction`, `gpc` unread).
        || record.repeats("subscriptions")
        || preferences.is_some_and(|p| preference_names().any(|name| p.repeats(name)))
        || subscriptions.is_some_and(|s| s.repeats(CHANNEL))
    {
        return Some(Outcome::Rejected("duplicate_key"));
    }
    let Some(preferences @ Json::Object(_)) = preferences else {
        return Some(Outcome::Rejected("bad_preferences"));
    };
    let updated_at_ms = match record.get("updatedAt") {
        None | Some(Json::Null) => record_time_ms,
        Some(Json::String(text)) => match rfc3339::to_unix_ms(text) {
            Some(ms) => ms,
            None => return Some(Outcome::Rejected("bad_updated_at")),
        },
        Some(_) => return Some(Outcome::Rejected("bad_updated_at")),
    };
    // Granted when a name of it is there and every one there is `true`.
    let mut granted: BTreeSet<&'static str> = CATEGORIES
        .into_iter()
        .filter(|category| {
            let values: Vec<&Json> = names_of(category)
                .filter_map(|name| preferences.get(name))
                .collect();
            !values.is_empty() && values.iter().all(|v| **v == Json::Bool(true))
        })
        .collect();
    // "Channel subscriptions": only the status `subscribed`, in any case, subscribes.
    if let Some(Json::String(status)) = subscriptions.and_then(|s| s.get(CHANNEL)) {
        if status.eq_ignore_ascii_case("subscribed") {
            granted.insert(CHANNEL);
        }
    }
    Some(Outcome::Set {
        granted,
        updated_at_ms,
    })
}

fn bits(names: &BTreeSet<&str>) -> CategorySet {
    let mut set = CategorySet::EMPTY;
    for name in names {
        let bit = vocabulary()
            .category(name)
            .or_else(|| vocabulary().channel(name));
        set.insert(bit.expect("a configured category or channel"));
    }
    set
}

/// Runs `parse_key` and `parse_value` on one input and panics if they disagree with the
/// README, or if a parsed state, encoded for re-publishing, does not read back as itself.
pub fn check(data: &[u8]) {
    let (key, value) = match data.iter().position(|&b| b == b'\n') {
        Some(newline) => (&data[..newline], Some(&data[newline + 1..])),
        None => (data, None),
    };
    assert_eq!(
        parse_key(None),
        Err(consent_enforcer::consent::Rejection::BadKey)
    );
    let actual_key = parse_key(Some(key)).map_err(|r| r.as_str());
    assert_eq!(
        actual_key,
        classify_key(Some(key)),
        "consent key {}",
        show(key)
    );

    let vocabulary = vocabulary();
    let actual = parse_value(value, RECORD_TIME_MS, vocabulary);
    let Some(expected) = classify_value(value, RECORD_TIME_MS) else {
        return;
    };
    let agree = match (&expected, &actual) {
        (Outcome::Remove, Ok(ConsentUpdate::Remove)) => true,
        (
            Outcome::Set {
                granted,
                updated_at_ms,
            },
            Ok(ConsentUpdate::Set(state)),
        ) => {
            *state
                == ConsentState {
                    granted: bits(granted),
                    updated_at_ms: *updated_at_ms,
                }
        }
        (Outcome::Rejected(reason), Err(rejection)) => *reason == rejection.as_str(),
        _ => false,
    };
    assert!(
        agree,
        "consent value {}\n  README: {expected:?}\n  src:    {actual:?}",
        value.map_or_else(|| "null".to_owned(), show)
    );

    if let Ok(ConsentUpdate::Set(state)) = actual {
        check_republished(&state);
    }
}

/// "A re-published state lists only the categories the configuration knows ... and carries
/// the stored `updatedAt`, so reading it back applies as equal."
fn check_republished(state: &ConsentState) {
    let vocabulary = vocabulary();
    let encoded = encode_value(state, vocabulary);
    let mut listed: Vec<String> = match json::parse(&encoded) {
        Ok(record) => match record.get("categoryPreferences") {
            Some(Json::Object(entries)) => entries.iter().map(|(name, _)| name.clone()).collect(),
            other => panic!(
                "re-published {}: categoryPreferences {other:?}",
                show(&encoded)
            ),
        },
        Err(error) => panic!("re-published {} is not JSON: {error:?}", show(&encoded)),
    };
    listed.sort();
    let mut known = CATEGORIES;
    known.sort();
    assert_eq!(listed, known, "re-published {}", show(&encoded));
    // Another record time, so that a missing updatedAt would show.
    assert_eq!(
        parse_value(Some(&encoded), 0, vocabulary),
        Ok(ConsentUpdate::Set(*state)),
        "re-published {} of {state:?}",
        show(&encoded)
    );
}
