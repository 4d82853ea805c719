//! What one consent record says (README, "Consent records").

use std::collections::BTreeSet;
use std::rc::Rc;

use super::config::{subscribed, Config, GPC_FACT, JURISDICTION_FACT};
use super::json::Json;
use super::rfc3339;

/// The configured categories a `categoryPreferences` object grants: one of its names is in
/// it and every one of them that is has JSON `true`.
pub fn granted(preferences: &Json<'_>, config: &Config) -> Vec<String> {
    config
        .categories
        .iter()
        .filter(|category| {
            let values: Vec<&Json> = config
                .names_of(category)
                .iter()
                .filter_map(|name| preferences.get(name))
                .collect();
            !values.is_empty() && values.iter().all(|v| **v == Json::Bool(true))
        })
        .cloned()
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// A null value.
    Tombstone,
    /// The reason, as the README's metric label names it.
    Malformed(&'static str),
    Valid {
        /// The configured categories whose value is JSON `true`: "the table stores no
        /// others" (README, "Consent records"). Reading: so a choice that differs only in
        /// categories no destination needs is a re-sent identical choice.
        grants: Rc<BTreeSet<String>>,
        /// `None`: missing or `null` (the record's Kafka timestamp stands in).
        updated_at: Option<i64>,
    },
}

/// Reading: the README lists the malformed cases as "value not JSON / not an object /
/// duplicate field / `categoryPreferences` missing or not an object / `updatedAt` not RFC
/// 3339", and its metric labels in the same order; a record with several faults is taken to
/// get the first of them. "Duplicate field" is taken like the events' rule: a key that
/// appears twice among the fields read (`categoryPreferences`, `updatedAt`, and the
/// configured categories inside `categoryPreferences`); other fields are ignored, duplicated
/// or not.
///
/// README, "CMP category IDs": a category named by several names (itself and its aliases)
/// is granted only if one of them is present and every present one is `true`; the
/// configured names include every alias. README, "Channel subscriptions": `subscriptions`
/// is read when it is an object; a channel is subscribed when its status is the string
/// `subscribed` in any case; a channel or `subscriptions` twice is a duplicate field.
pub fn read(value: Option<&[u8]>, config: &Config) -> Meaning {
    let Some(bytes) = value else {
        return Meaning::Tombstone;
    };
    let Some(json) = Json::parse(bytes) else {
        return Meaning::Malformed("not_json");
    };
    if !json.is_object() {
        return Meaning::Malformed("not_object");
    }
    let preferences = json.get("categoryPreferences");
    let subscriptions = json.get("subscriptions");
    let names = config.preference_names();
    let duplicate = json.count("categoryPreferences") > 1
        || json.count("updatedAt") > 1
        || (!config.channels.is_empty() && json.count("subscriptions") > 1)
        || (!config.jurisdictions.is_empty()
            && (json.count("jurisdiction") > 1 || json.count("gpc") > 1))
        || preferences.is_some_and(|p| names.iter().any(|c| p.count(c) > 1))
        || subscriptions.is_some_and(|s| config.channels.iter().any(|c| s.count(c) > 1));
    // Reading: `subscriptions`, `jurisdiction` and `gpc` are fields read (README, "duplicate
    // field") only where a destination has a channel, or jurisdictions are declared.
    if duplicate {
        return Meaning::Malformed("duplicate_key");
    }
    let Some(preferences) = preferences.filter(|p| p.is_object()) else {
        return Meaning::Malformed("bad_preferences");
    };
    let updated_at = match json.get("updatedAt") {
        None | Some(Json::Null) => None,
        Some(Json::String(text)) => match rfc3339::parse_ms(text) {
            Some(ms) => Some(ms),
            None => return Meaning::Malformed("bad_updated_at"),
        },
        Some(_) => return Meaning::Malformed("bad_updated_at"),
    };
    let mut grants: BTreeSet<String> = granted(preferences, config).into_iter().collect();
    if !config.jurisdictions.is_empty() {
        if let Some(Json::String(named)) = json.get("jurisdiction") {
            if let Some(name) = config.jurisdiction_of(named) {
                grants.insert(format!("{JURISDICTION_FACT}{name}"));
            }
        }
        if json.get("gpc") == Some(&Json::Bool(true)) {
            grants.insert(GPC_FACT.to_owned());
        }
    }
    for channel in &config.channels {
        if let Some(Json::String(status)) = subscriptions.and_then(|s| s.get(channel)) {
            if status.eq_ignore_ascii_case("subscribed") {
                grants.insert(subscribed(channel));
            }
        }
    }
    Meaning::Valid {
        grants: Rc::new(grants),
        updated_at,
    }
}
