//! What one event says (README, "The decision": malformed events, identifiers, the stamp,
//! `integrations`; "Guarantees" 3: `timestamp`).

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::config::Config;
use super::json::Json;
use super::record::granted;
use super::rfc3339;

#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// The `timestamp` field, when it is an RFC 3339 string.
    pub timestamp_ms: Option<i64>,
    /// The event's own consent sources combined: the categories every present one grants
    /// (`None` when neither is present). `context.consent.categoryPreferences` when that
    /// field exists: the categories it grants (none if it is not an object).
    /// `context.consentManagement` when that field exists: the categories an entry of
    /// `allowedConsentIds` names and no entry of `deniedConsentIds` does (none if it is not
    /// an object).
    pub stamp: Option<BTreeSet<String>>,
    /// The entries of `integrations` when it is an object (nothing otherwise).
    pub integrations: Vec<(Cow<'a, str>, Json<'a>)>,
    /// `context.gpc` is JSON `true`.
    pub gpc: bool,
    /// The jurisdiction `context.location` falls in.
    pub jurisdiction: Option<String>,
    /// `context.consentManagement` exists (for measuring coverage).
    pub rudderstack: bool,
    /// A stamp names some configured alias (for measuring coverage).
    pub alias_named: bool,
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
    let segment: Option<BTreeSet<String>> = json
        .get("context")
        .and_then(|c| c.get("consent"))
        .and_then(|c| c.get("categoryPreferences"))
        .map(|preferences| granted(preferences, config).into_iter().collect());
    let rudderstack: Option<BTreeSet<String>> = json
        .get("context")
        .and_then(|c| c.get("consentManagement"))
        .map(|managed| {
            let ids = |key: &str| -> Vec<String> {
                let strings = match managed.get(key) {
                    Some(Json::Array(items)) => items
                        .iter()
                        .filter_map(|item| match item {
                            Json::String(id) => Some(id.as_ref()),
                            _ => None,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                config.categories_named(strings)
            };
            let denied = ids("deniedConsentIds");
            ids("allowedConsentIds")
                .into_iter()
                .filter(|c| !denied.contains(c))
                .collect()
        });
    let context = json.get("context");
    let preferences = context
        .and_then(|c| c.get("consent"))
        .and_then(|c| c.get("categoryPreferences"));
    let alias_named = config.aliases.iter().any(|(alias, _)| {
        preferences.is_some_and(|p| p.get(alias).is_some())
            || context
                .and_then(|c| c.get("consentManagement"))
                .and_then(|m| m.get("allowedConsentIds"))
                .is_some_and(|ids| matches!(ids, Json::Array(items) if items.contains(&Json::String(alias.as_str().into()))))
    });
    let rudderstack_present = rudderstack.is_some();
    let stamp = match (segment, rudderstack) {
        (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
        (a, b) => a.or(b),
    };
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
        rudderstack: rudderstack_present,
        alias_named,
        gpc: !config.jurisdictions.is_empty()
            && context.and_then(|c| c.get("gpc")) == Some(&Json::Bool(true)),
        jurisdiction: context
            .and_then(|c| c.get("location"))
            .and_then(|location| location_jurisdiction(location, config)),
    })
}

/// README, "Jurisdictions": `country` and `region` as ISO codes or English names. The
/// model knows only the names the generator writes; the README's table has every country.
fn location_jurisdiction(location: &Json<'_>, config: &Config) -> Option<String> {
    if config.jurisdictions.is_empty() {
        return None;
    }
    let text = |key: &str| match location.get(key) {
        Some(Json::String(text)) => Some(text.trim().to_owned()),
        _ => None,
    };
    let country = text("country")?;
    let country = match country.to_lowercase().as_str() {
        "germany" => "DE".to_owned(),
        "france" => "FR".to_owned(),
        "united states" | "united states of america" | "usa" => "US".to_owned(),
        "brazil" => "BR".to_owned(),
        code if code.len() == 2 && code.chars().all(|c| c.is_ascii_alphabetic()) => {
            code.to_ascii_uppercase()
        }
        _ => return None,
    };
    let region = text("region").and_then(|region| {
        let upper = region.to_ascii_uppercase();
        if let Some((prefix, _)) = upper.split_once('-') {
            return (prefix == country).then_some(upper);
        }
        match (country.as_str(), region.to_lowercase().as_str()) {
            ("US", "california") => Some("US-CA".to_owned()),
            ("US", "texas") => Some("US-TX".to_owned()),
            (_, code)
                if (1..=3).contains(&code.len())
                    && code.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Some(format!("{country}-{upper}"))
            }
            _ => None,
        }
    });
    let exact = |code: &str| {
        config
            .jurisdictions
            .iter()
            .find(|j| j.codes.iter().any(|c| c == code))
            .map(|j| j.name.clone())
    };
    region
        .as_deref()
        .and_then(exact)
        .or_else(|| exact(&country))
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
    if context.is_some_and(|c| twice(c, "consent") || twice(c, "consentManagement")) {
        return true;
    }
    // `gpc` and `location` are read only with jurisdictions declared.
    if !config.jurisdictions.is_empty() {
        if context.is_some_and(|c| twice(c, "gpc") || twice(c, "location")) {
            return true;
        }
        let location = context.and_then(|c| c.get("location"));
        if location.is_some_and(|l| twice(l, "country") || twice(l, "region")) {
            return true;
        }
    }
    let managed = context.and_then(|c| c.get("consentManagement"));
    if managed.is_some_and(|m| twice(m, "allowedConsentIds") || twice(m, "deniedConsentIds")) {
        return true;
    }
    let consent = context.and_then(|c| c.get("consent"));
    if consent.is_some_and(|c| twice(c, "categoryPreferences")) {
        return true;
    }
    let preferences = consent.and_then(|c| c.get("categoryPreferences"));
    preferences.is_some_and(|p| config.preference_names().iter().any(|c| twice(p, c)))
}
