//! What one event says (README, "The decision": malformed events, identifiers, the stamp,
//! `integrations`; "Guarantees" 3: `timestamp`).

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::config::Config;
use super::json::Json;
use super::rfc3339;

#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// The `timestamp` field, when it is an RFC 3339 string.
    pub timestamp_ms: Option<i64>,
    /// `context.consent.categoryPreferences` when that field exists: the categories it has
    /// JSON `true` (none if it is not an object).
    pub stamp: Option<BTreeSet<String>>,
    /// The entries of `integrations` when it is an object (nothing otherwise).
    pub integrations: Vec<(Cow<'a, str>, Json<'a>)>,
}

/// The event, or the reason it is dead-lettered, in the README's order of classification.
pub fn read<'a>(value: Option<&'a [u8]>, config: &Config) -> Result<Event<'a>, &'static str> {
    let bytes = value.ok_or("null_value")?;
    if bytes.len() > config.max_event_bytes {
        return Err("too_large");
    }
    let json = Json::parse(bytes).ok_or("not_json")?;
    if !json.is_object() {
        return Err("not_object");
    }
    if has_duplicate(&json, config) {
        return Err("duplicate_key");
    }
    let identifier = |key: &str| match json.get(key) {
        Some(Json::String(id)) if !id.is_empty() => Some(id.to_string()),
        _ => None,
    };
    let user_id = identifier("userId");
    let anonymous_id = identifier("anonymousId");
    if user_id.is_none() && anonymous_id.is_none() {
        return Err("no_identifier");
    }
    let timestamp_ms = match json.get("timestamp") {
        Some(Json::String(text)) => rfc3339::parse_ms(text),
        _ => None,
    };
    // Reading: "present whenever that field exists" needs `context` and `context.consent`
    // to be objects for the field to exist at all.
    let stamp = json
        .get("context")
        .and_then(|c| c.get("consent"))
        .and_then(|c| c.get("categoryPreferences"))
        .map(|preferences| {
            preferences
                .entries()
                .iter()
                .filter(|(_, v)| *v == Json::Bool(true))
                .map(|(k, _)| k.to_string())
                .collect()
        });
    let integrations = json
        .get("integrations")
        .map(|i| i.entries().to_vec())
        .unwrap_or_default();
    Ok(Event {
        user_id,
        anonymous_id,
        timestamp_ms,
        stamp,
        integrations,
    })
}

/// "A key appears twice among the fields the decision reads (`userId`, `anonymousId`,
/// `timestamp`, `integrations` and the configured names and `All` in it, `context`,
/// `context.consent`, `context.consent.categoryPreferences` and the configured categories in
/// it)".
fn has_duplicate(json: &Json, config: &Config) -> bool {
    let twice = |object: &Json, key: &str| object.count(key) > 1;
    let top = [
        "userId",
        "anonymousId",
        "timestamp",
        "integrations",
        "context",
    ];
    if top.iter().any(|key| twice(json, key)) {
        return true;
    }
    if let Some(integrations) = json.get("integrations") {
        if twice(integrations, "All")
            || config
                .integration_names
                .iter()
                .any(|name| twice(integrations, name))
        {
            return true;
        }
    }
    let context = json.get("context");
    if context.is_some_and(|c| twice(c, "consent")) {
        return true;
    }
    let consent = context.and_then(|c| c.get("consent"));
    if consent.is_some_and(|c| twice(c, "categoryPreferences")) {
        return true;
    }
    let preferences = consent.and_then(|c| c.get("categoryPreferences"));
    preferences.is_some_and(|p| config.categories.iter().any(|c| twice(p, c)))
}
