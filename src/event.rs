//! Reads, from a Segment-spec event, only what the decision needs: `userId`, `anonymousId`,
//! `integrations`, `timestamp` and the consent stamps in `context` ([`context`]).
//!
//! The whole value is still validated (UTF-8, JSON syntax of skipped fields, no trailing bytes)
//! because downstream parsers must read the same event we judged, but nothing is built for the
//! fields we skip: identifiers borrow from the input, names are interned bits.

use std::borrow::Cow;
use std::cell::Cell;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use self::context::ContextSeed;
pub(crate) use self::context::StringSeed;
use crate::json::{
    self, seed_of_any_value, skip_bools_and_strings, skip_map, skip_numbers_null_and_arrays, Flag,
    FlagSeed, KeySeed, NameSeed, Scope,
};
use crate::vocabulary::{CategorySet, IntegrationSet, Vocabulary};

/// Why an event is dead-lettered instead of judged. The order of the variants is the order
/// of classification, and `as_str` gives the `consent-enforcer-error` header and metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    NullValue,
    TooLarge,
    NotJson,
    NotObject,
    DuplicateKey,
    NoIdentifier,
    /// A record of the hold topic whose destinations header is missing or names a
    /// destination not configured: not written by this enforcer as configured.
    BadHoldHeaders,
}

impl Malformed {
    pub const ALL: [Malformed; 7] = [
        Malformed::NullValue,
        Malformed::TooLarge,
        Malformed::NotJson,
        Malformed::NotObject,
        Malformed::DuplicateKey,
        Malformed::NoIdentifier,
        Malformed::BadHoldHeaders,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::NullValue => "null_value",
            Malformed::TooLarge => "too_large",
            Malformed::NotJson => "not_json",
            Malformed::NotObject => "not_object",
            Malformed::DuplicateKey => "duplicate_key",
            Malformed::NoIdentifier => "no_identifier",
            Malformed::BadHoldHeaders => "bad_hold_headers",
        }
    }
}

/// What the event's `integrations` object says about the configured integration names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Integrations {
    /// `integrations.All` is JSON `false`.
    pub all_false: bool,
    /// Names whose value is JSON `false`.
    pub disabled: IntegrationSet,
    /// Names whose value is JSON `true` or an object (per-integration options).
    pub enabled: IntegrationSet,
}

/// The parts of an event the decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventView<'a> {
    pub user_id: Option<Cow<'a, str>>,
    pub anonymous_id: Option<Cow<'a, str>>,
    pub integrations: Integrations,
    /// The event's own consent stamp, `context.consent.categoryPreferences`: `Some` whenever
    /// that field exists; a non-object stamp is present and grants nothing.
    pub stamp: Option<CategorySet>,
    /// RudderStack's stamp, `context.consentManagement`: `Some` whenever that field exists;
    /// grants the categories an allowed ID maps to and no denied ID does.
    pub managed: Option<CategorySet>,
    /// The `timestamp` field (when the event happened, by the client's clock), if it is an
    /// RFC 3339 string.
    pub timestamp_ms: Option<i64>,
    /// Names in the stamps that are neither a category nor an alias.
    pub unknown_names: u32,
    /// `context.gpc` is JSON `true`: the browser sent a Global Privacy Control signal.
    pub gpc: bool,
    /// The jurisdiction (its bit) `context.location` falls in, when jurisdictions are
    /// configured.
    pub location: Option<u8>,
    /// With `consent.learn_from_events`: a `track` event named in `learn_event_names`.
    pub preference_update: bool,
    /// With `consent.learn_from_events`: the event's `messageId`, which the consent record
    /// learned from it names (and the audit log with it).
    pub message_id: Option<Cow<'a, str>>,
}

/// Classifies and reads one event value. `max_bytes` is `input.max_event_bytes`.
pub fn parse<'a>(
    value: Option<&'a [u8]>,
    max_bytes: usize,
    vocabulary: &Vocabulary,
) -> Result<EventView<'a>, Malformed> {
    let bytes = value.ok_or(Malformed::NullValue)?;
    if bytes.len() > max_bytes {
        return Err(Malformed::TooLarge);
    }
    // serde_json does not check UTF-8 inside strings it skips; this does, for the whole value.
    let text = std::str::from_utf8(bytes).map_err(|_| Malformed::NotJson)?;
    let (view, duplicate) = match read(text, vocabulary) {
        // Valid JSON all the same: read it again with its numbers zeroed (cold path).
        Err(error) if json::is_number_out_of_range(&error) => {
            read(&json::with_numbers_zeroed(text), vocabulary)
                .map(|(view, duplicate)| (view.map(EventView::into_owned), duplicate))
        }
        read => read,
    }
    .map_err(|_| Malformed::NotJson)?;
    if json::has_unpaired_surrogate(text) {
        return Err(Malformed::NotJson);
    }
    let view = view.ok_or(Malformed::NotObject)?;
    if duplicate {
        return Err(Malformed::DuplicateKey);
    }
    if view.user_id.is_none() && view.anonymous_id.is_none() {
        return Err(Malformed::NoIdentifier);
    }
    Ok(view)
}

/// Reads the whole of `text`: the view (`None` if it is not an object) and whether a field read
/// appeared twice.
fn read<'a>(
    text: &'a str,
    vocabulary: &Vocabulary,
) -> Result<(Option<EventView<'a>>, bool), serde_json::Error> {
    let duplicate = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let view = EventSeed {
        vocabulary,
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok((view, duplicate.get()))
}

impl EventView<'_> {
    /// The event's own consent sources combined: what every present stamp grants.
    pub fn stamps(&self) -> Option<CategorySet> {
        match (self.stamp, self.managed) {
            (Some(stamp), Some(managed)) => Some(stamp.intersection(managed)),
            (stamp, managed) => stamp.or(managed),
        }
    }

    fn into_owned(self) -> EventView<'static> {
        EventView {
            user_id: self.user_id.map(|id| Cow::Owned(id.into_owned())),
            anonymous_id: self.anonymous_id.map(|id| Cow::Owned(id.into_owned())),
            integrations: self.integrations,
            stamp: self.stamp,
            managed: self.managed,
            timestamp_ms: self.timestamp_ms,
            unknown_names: self.unknown_names,
            gpc: self.gpc,
            location: self.location,
            preference_update: self.preference_update,
            message_id: self.message_id.map(|id| Cow::Owned(id.into_owned())),
        }
    }
}

struct EventSeed<'v> {
    vocabulary: &'v Vocabulary,
    duplicate: &'v Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    /// `None` when the value is valid JSON but not an object.
    type Value = Option<EventView<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let unknown_names = Cell::new(0);
        deserializer.deserialize_any(EventVisitor(Scope {
            vocabulary: self.vocabulary,
            duplicate: self.duplicate,
            unknown_names: &unknown_names,
        }))
    }
}

struct EventVisitor<'v>(Scope<'v>);

const USER_ID: u32 = 1;
const ANONYMOUS_ID: u32 = 2;
const INTEGRATIONS: u32 = 4;
const CONTEXT: u32 = 8;
const TIMESTAMP: u32 = 16;
const TYPE: u32 = 32;
const EVENT: u32 = 64;

impl<'de> Visitor<'de> for EventVisitor<'_> {
    type Value = Option<EventView<'de>>;

    skip_numbers_null_and_arrays!(Option<EventView<'de>>);
    skip_bools_and_strings!(Option<EventView<'de>>);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let scope = self.0;
        let mut seen = 0;
        let mut view = EventView {
            user_id: None,
            anonymous_id: None,
            integrations: Integrations::default(),
            stamp: None,
            managed: None,
            timestamp_ms: None,
            unknown_names: 0,
            gpc: false,
            location: None,
            preference_update: false,
            message_id: None,
        };
        // Read (and checked for duplicates) only when learning from events.
        let (mut track, mut named) = (false, false);
        while let Some(key) = map.next_key_seed(KeySeed(&TOP_LEVEL_KEYS))? {
            match key {
                Some(0) => {
                    scope.see(&mut seen, USER_ID);
                    view.user_id = map.next_value_seed(IdentifierSeed)?;
                }
                Some(1) => {
                    scope.see(&mut seen, ANONYMOUS_ID);
                    view.anonymous_id = map.next_value_seed(IdentifierSeed)?;
                }
                Some(2) => {
                    scope.see(&mut seen, INTEGRATIONS);
                    view.integrations = map.next_value_seed(IntegrationsSeed(scope))?;
                }
                Some(3) => {
                    scope.see(&mut seen, CONTEXT);
                    let context = map.next_value_seed(ContextSeed(scope))?;
                    view.stamp = context.stamp;
                    view.managed = context.managed;
                    view.gpc = context.gpc;
                    view.location = context.location;
                }
                Some(4) => {
                    scope.see(&mut seen, TIMESTAMP);
                    view.timestamp_ms = map.next_value_seed(TimestampSeed)?;
                }
                Some(5) if scope.vocabulary.learns() => {
                    scope.see(&mut seen, TYPE);
                    track = map.next_value_seed(context::StringSeed)?.as_deref() == Some("track");
                }
                Some(6) if scope.vocabulary.learns() => {
                    scope.see(&mut seen, EVENT);
                    named = map
                        .next_value_seed(context::StringSeed)?
                        .is_some_and(|name| scope.vocabulary.learns_from(&name));
                }
                // Not checked for duplicates: it decides nothing, it only names the event.
                Some(7) if scope.vocabulary.learns() => {
                    view.message_id = map.next_value_seed(IdentifierSeed)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        view.unknown_names = scope.unknown_names.get();
        view.preference_update = track && named;
        if !view.preference_update {
            view.message_id = None;
        }
        Ok(Some(view))
    }
}

const TOP_LEVEL_KEYS: [&str; 8] = [
    "userId",
    "anonymousId",
    "integrations",
    "context",
    "timestamp",
    "type",
    "event",
    "messageId",
];

/// The event's `timestamp`: an RFC 3339 string, or nothing usable.
struct TimestampSeed;

seed_of_any_value!(TimestampSeed => Option<i64>);

impl<'de> Visitor<'de> for TimestampSeed {
    type Value = Option<i64>;

    skip_numbers_null_and_arrays!(Option<i64>);

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(crate::consent::record::parse_rfc3339_ms(text))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map)?;
        Ok(None)
    }
}

/// A `userId` or `anonymousId`: counts only as a non-empty string; any other type is absent.
struct IdentifierSeed;

seed_of_any_value!(IdentifierSeed => Option<Cow<'de, str>>);

impl<'de> Visitor<'de> for IdentifierSeed {
    type Value = Option<Cow<'de, str>>;

    skip_numbers_null_and_arrays!(Option<Cow<'de, str>>);

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, id: &'de str) -> Result<Self::Value, E> {
        Ok((!id.is_empty()).then_some(Cow::Borrowed(id)))
    }

    /// An identifier with escapes: serde_json decodes it into a scratch buffer.
    fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<Self::Value, E> {
        Ok((!id.is_empty()).then(|| Cow::Owned(id.to_owned())))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map)?;
        Ok(None)
    }
}

/// The `integrations` object. Only the configured names and `All` are read; a non-object
/// `integrations` says nothing.
struct IntegrationsSeed<'v>(Scope<'v>);

seed_of_any_value!(IntegrationsSeed<'_> => Integrations);

impl<'de> Visitor<'de> for IntegrationsSeed<'_> {
    type Value = Integrations;

    skip_numbers_null_and_arrays!(Integrations);
    skip_bools_and_strings!(Integrations);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let scope = self.0;
        let mut integrations = Integrations::default();
        let mut seen_all = false;
        let mut seen = IntegrationSet::default();
        while let Some(key) = map.next_key_seed(NameSeed {
            lookup: |name: &str| {
                if name == "All" {
                    Some(u8::MAX)
                } else {
                    scope.vocabulary.integration(name)
                }
            },
        })? {
            match key {
                Some(u8::MAX) => {
                    if std::mem::replace(&mut seen_all, true) {
                        scope.duplicate.set(true);
                    }
                    integrations.all_false = map.next_value_seed(FlagSeed)? == Flag::False;
                }
                Some(index) => {
                    if seen.contains(index) {
                        scope.duplicate.set(true);
                    }
                    seen.insert(index);
                    match map.next_value_seed(FlagSeed)? {
                        Flag::False => integrations.disabled.insert(index),
                        Flag::True | Flag::Object => integrations.enabled.insert(index),
                        Flag::Other => {}
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(integrations)
    }
}

mod context;
#[cfg(test)]
mod tests;
