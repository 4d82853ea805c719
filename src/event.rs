//! Reads, from a Segment-spec event, only what the decision needs: `userId`, `anonymousId`,
//! `integrations` and `context.consent.categoryPreferences`.
//!
//! The whole value is still validated (UTF-8, JSON syntax of skipped fields, no trailing bytes)
//! because downstream parsers must read the same event we judged, but nothing is built for the
//! fields we skip: identifiers borrow from the input, names are interned bits.

use std::borrow::Cow;
use std::cell::Cell;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::json::{
    self, seed_of_any_value, skip_bools_and_strings, skip_map, skip_numbers_null_and_arrays, Flag,
    FlagSeed, GrantsSeed, KeySeed, NameSeed, Scope,
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
    /// The `timestamp` field (when the event happened, by the client's clock), if it is an
    /// RFC 3339 string.
    pub timestamp_ms: Option<i64>,
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
    fn into_owned(self) -> EventView<'static> {
        EventView {
            user_id: self.user_id.map(|id| Cow::Owned(id.into_owned())),
            anonymous_id: self.anonymous_id.map(|id| Cow::Owned(id.into_owned())),
            integrations: self.integrations,
            stamp: self.stamp,
            timestamp_ms: self.timestamp_ms,
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
        deserializer.deserialize_any(EventVisitor(Scope {
            vocabulary: self.vocabulary,
            duplicate: self.duplicate,
        }))
    }
}

struct EventVisitor<'v>(Scope<'v>);

const USER_ID: u32 = 1;
const ANONYMOUS_ID: u32 = 2;
const INTEGRATIONS: u32 = 4;
const CONTEXT: u32 = 8;
const TIMESTAMP: u32 = 16;

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
            timestamp_ms: None,
        };
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
                    view.stamp = map.next_value_seed(PathSeed {
                        scope,
                        path: &["consent", "categoryPreferences"],
                    })?;
                }
                Some(4) => {
                    scope.see(&mut seen, TIMESTAMP);
                    view.timestamp_ms = map.next_value_seed(TimestampSeed)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(view))
    }
}

const TOP_LEVEL_KEYS: [&str; 5] = [
    "userId",
    "anonymousId",
    "integrations",
    "context",
    "timestamp",
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

/// Walks nested objects along `path` (below the current value) to a `categoryPreferences`
/// object. `None` when any step is missing or not an object; once the last step exists, the
/// stamp is present.
struct PathSeed<'v, 'p> {
    scope: Scope<'v>,
    path: &'p [&'static str],
}

seed_of_any_value!(PathSeed<'_, '_> => Option<CategorySet>);

impl<'de> Visitor<'de> for PathSeed<'_, '_> {
    type Value = Option<CategorySet>;

    skip_numbers_null_and_arrays!(Option<CategorySet>);
    skip_bools_and_strings!(Option<CategorySet>);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (step, rest) = match self.path.split_first() {
            Some(split) => split,
            None => return Ok(None),
        };
        let mut found = None;
        let mut seen = 0;
        while let Some(key) = map.next_key_seed(KeySeed(std::slice::from_ref(step)))? {
            if key.is_none() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.scope.see(&mut seen, 1);
            found = if rest.is_empty() {
                // A stamp that exists but is not an object is present and grants nothing.
                Some(
                    map.next_value_seed(GrantsSeed(self.scope))?
                        .unwrap_or_default(),
                )
            } else {
                map.next_value_seed(PathSeed {
                    scope: self.scope,
                    path: rest,
                })?
            };
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        let mut vocabulary = Vocabulary::default();
        vocabulary.intern_category("analytics");
        vocabulary.intern_category("advertising");
        vocabulary.intern_integration("Amplitude");
        vocabulary.intern_integration("Google Ads");
        vocabulary
    }

    fn parse_str(text: &str) -> Result<EventView<'_>, Malformed> {
        let vocabulary = Box::leak(Box::new(vocabulary()));
        parse(Some(text.as_bytes()), 1_000, vocabulary)
    }

    fn integration_bit(name: &str) -> IntegrationSet {
        let mut set = IntegrationSet::default();
        set.insert(vocabulary().integration(name).unwrap());
        set
    }

    #[test]
    fn reads_identifiers_without_copying() {
        let view = parse_str(r#"{"type":"track","userId":"u1","anonymousId":"a1"}"#).unwrap();
        assert!(matches!(view.user_id, Some(Cow::Borrowed("u1"))));
        assert!(matches!(view.anonymous_id, Some(Cow::Borrowed("a1"))));
        assert_eq!(view.stamp, None);
    }

    #[test]
    fn escaped_identifier_is_decoded() {
        let view = parse_str(r#"{"userId":"u\u00e9\"1"}"#).unwrap();
        assert_eq!(view.user_id.as_deref(), Some("u\u{e9}\"1"));
    }

    #[test]
    fn non_string_or_empty_identifier_counts_as_absent() {
        let view = parse_str(r#"{"userId":42,"anonymousId":"a1"}"#).unwrap();
        assert_eq!(view.user_id, None);
        for id in ["null", "\"\"", "{\"x\":1}", "[\"u\"]", "true", "1.5"] {
            let text = format!(r#"{{"userId":{id}}}"#);
            assert_eq!(parse_str(&text), Err(Malformed::NoIdentifier), "{text}");
        }
    }

    #[test]
    fn classification_follows_the_documented_order() {
        let vocabulary = vocabulary();
        assert_eq!(parse(None, 10, &vocabulary), Err(Malformed::NullValue));
        assert_eq!(
            parse(Some(b"{\"userId\":\"this is too long\"}"), 10, &vocabulary),
            Err(Malformed::TooLarge)
        );
        assert_eq!(parse_str("{\"userId\":"), Err(Malformed::NotJson));
        assert_eq!(parse_str("[1,2]"), Err(Malformed::NotObject));
        assert_eq!(parse_str("\"text\""), Err(Malformed::NotObject));
        assert_eq!(
            parse_str(r#"{"userId":"u1","userId":"u2"}"#),
            Err(Malformed::DuplicateKey)
        );
        assert_eq!(
            parse_str(r#"{"type":"track"}"#),
            Err(Malformed::NoIdentifier)
        );
    }

    #[test]
    fn not_json_wins_over_a_duplicate_found_earlier() {
        assert_eq!(
            parse_str(r#"{"userId":"u1","userId":"u2","x":}"#),
            Err(Malformed::NotJson)
        );
    }

    #[test]
    fn trailing_bytes_and_bad_skipped_fields_are_not_json() {
        assert_eq!(parse_str(r#"{"userId":"u1"} {}"#), Err(Malformed::NotJson));
        assert_eq!(
            parse_str(r#"{"userId":"u1","properties":{"a":tru}}"#),
            Err(Malformed::NotJson)
        );
        let vocabulary = vocabulary();
        let invalid_utf8_in_skipped = b"{\"userId\":\"u1\",\"properties\":{\"a\":\"\xff\"}}";
        assert_eq!(
            parse(Some(invalid_utf8_in_skipped), 1_000, &vocabulary),
            Err(Malformed::NotJson)
        );
    }

    #[test]
    fn unpaired_surrogate_in_any_string_is_not_json() {
        for text in [
            r#"{"userId":"u1","properties":{"title":"Caf\u00e9 \ud83d"}}"#,
            r#"{"userId":"u1","traits":{"em\ud800ail":"a@example.com"}}"#,
            r#"{"userId":"u1","context":{"page":{"title":"\udc00"}}}"#,
            r#"{"userId":"\ud800"}"#,
            r#"["\ud800"]"#,
        ] {
            assert_eq!(parse_str(text), Err(Malformed::NotJson), "{text}");
        }
        let view =
            parse_str(r#"{"userId":"u\ud83d\ude00","properties":{"path":"C:\\ud800"}}"#).unwrap();
        assert_eq!(view.user_id.as_deref(), Some("u\u{1f600}"));
    }

    #[test]
    fn duplicate_keys_only_matter_among_fields_read() {
        assert!(parse_str(r#"{"userId":"u1","event":"a","event":"b"}"#).is_ok());
        for text in [
            r#"{"userId":"u1","context":{"consent":{}},"context":{}}"#,
            r#"{"userId":"u1","context":{"consent":{},"consent":{}}}"#,
            r#"{"userId":"u1","context":{"consent":{"categoryPreferences":{},"categoryPreferences":{}}}}"#,
            r#"{"userId":"u1","context":{"consent":{"categoryPreferences":{"analytics":true,"analytics":false}}}}"#,
            r#"{"userId":"u1","integrations":{"Amplitude":true,"Amplitude":false}}"#,
            r#"{"userId":"u1","integrations":{"All":true,"All":false}}"#,
            r#"{"userId":"u1","anonymousId":"a","anonymousId":"b"}"#,
            r#"{"userId":"u1","us\u0065rId":"u2"}"#,
            r#"{"userId":"u1","timestamp":"2026-11-22T10:00:00Z","timestamp":"2020-01-01T00:00:00Z"}"#,
        ] {
            assert_eq!(parse_str(text), Err(Malformed::DuplicateKey), "{text}");
        }
        assert!(parse_str(r#"{"userId":"u1","integrations":{"Other":1,"Other":2}}"#).is_ok());
        assert!(parse_str(
            r#"{"userId":"u1","context":{"consent":{"categoryPreferences":{"x":1,"x":2}}}}"#
        )
        .is_ok());
    }

    #[test]
    fn timestamp_is_read_when_it_is_rfc3339() {
        let view = parse_str(r#"{"userId":"u1","timestamp":"2026-11-22T10:00:00.250Z"}"#).unwrap();
        assert_eq!(view.timestamp_ms, Some(1_795_341_600_250));
        for other in [
            "\"yesterday\"",
            "\"2026-11-22S10:00:00Z\"",
            "1795341600",
            "null",
            "{}",
        ] {
            let text = format!(r#"{{"userId":"u1","timestamp":{other}}}"#);
            assert_eq!(parse_str(&text).unwrap().timestamp_ms, None, "{text}");
        }
    }

    #[test]
    fn consent_stamp_grants_only_json_true() {
        let view = parse_str(
            r#"{"userId":"u1","context":{"ip":"1.2.3.4","consent":{"categoryPreferences":{"analytics":true,"advertising":"yes"}}}}"#,
        )
        .unwrap();
        assert_eq!(view.stamp, Some(CategorySet::from_bits(0b01)));
    }

    #[test]
    fn non_object_stamp_is_present_and_grants_nothing() {
        let view =
            parse_str(r#"{"userId":"u1","context":{"consent":{"categoryPreferences":null}}}"#)
                .unwrap();
        assert_eq!(view.stamp, Some(CategorySet::EMPTY));
    }

    #[test]
    fn stamp_is_absent_without_category_preferences() {
        for text in [
            r#"{"userId":"u1","context":{"consent":{}}}"#,
            r#"{"userId":"u1","context":{"consent":"granted"}}"#,
            r#"{"userId":"u1","context":[]}"#,
            r#"{"userId":"u1","categoryPreferences":{"analytics":true}}"#,
        ] {
            assert_eq!(parse_str(text).unwrap().stamp, None, "{text}");
        }
    }

    #[test]
    fn out_of_range_number_as_identifier_counts_as_absent() {
        assert_eq!(
            parse_str(r#"{"userId":1e400}"#),
            Err(Malformed::NoIdentifier)
        );
        let view = parse_str(r#"{"userId":-1e400,"anonymousId":"a\u00e91"}"#).unwrap();
        assert_eq!(view.user_id, None);
        assert_eq!(view.anonymous_id.as_deref(), Some("a\u{e9}1"));
    }

    #[test]
    fn out_of_range_number_in_a_skipped_field_is_valid_json() {
        let view = parse_str(
            r#"{"userId":"u1","properties":{"price":1e400,"big":[1E+99999999999,-1e309]}}"#,
        )
        .unwrap();
        assert_eq!(view.user_id.as_deref(), Some("u1"));
    }

    #[test]
    fn out_of_range_number_at_the_top_level_is_not_an_object() {
        assert_eq!(parse_str("1e400"), Err(Malformed::NotObject));
        let digits = format!("[{}]", "9".repeat(400));
        assert_eq!(parse_str(&digits), Err(Malformed::NotObject));
    }

    #[test]
    fn out_of_range_numbers_in_read_fields_count_as_wrong_types() {
        let view = parse_str(
            r#"{"userId":"u1","timestamp":1e400,"integrations":{"All":1e400,"Amplitude":1e400,"Google Ads":false},"context":{"consent":{"categoryPreferences":{"analytics":1e400,"advertising":true}}}}"#,
        )
        .unwrap();
        assert_eq!(view.timestamp_ms, None);
        assert!(!view.integrations.all_false);
        assert_eq!(view.integrations.enabled, IntegrationSet::default());
        assert_eq!(view.integrations.disabled, integration_bit("Google Ads"));
        assert_eq!(view.stamp, Some(CategorySet::from_bits(0b10)));
        let view =
            parse_str(r#"{"userId":"u1","context":{"consent":{"categoryPreferences":1e400}}}"#)
                .unwrap();
        assert_eq!(view.stamp, Some(CategorySet::EMPTY));
        assert_eq!(
            parse_str(r#"{"userId":"u1","context":1e400}"#)
                .unwrap()
                .stamp,
            None
        );
    }

    #[test]
    fn event_with_an_out_of_range_number_is_still_classified_in_order() {
        assert_eq!(
            parse_str(r#"{"userId":1e400,"x":}"#),
            Err(Malformed::NotJson)
        );
        assert_eq!(parse_str(r#"{"userId":1e400.5}"#), Err(Malformed::NotJson));
        assert_eq!(
            parse_str(r#"{"userId":1e400,"userId":"u1"}"#),
            Err(Malformed::DuplicateKey)
        );
    }

    #[test]
    fn integrations_are_read_by_exact_name() {
        let view = parse_str(
            r#"{"userId":"u1","integrations":{"All":false,"Amplitude":{"session":1},"Google Ads":false,"amplitude":false}}"#,
        )
        .unwrap();
        assert!(view.integrations.all_false);
        assert_eq!(view.integrations.enabled, integration_bit("Amplitude"));
        assert_eq!(view.integrations.disabled, integration_bit("Google Ads"));
    }

    #[test]
    fn non_boolean_integration_values_are_neither_on_nor_off() {
        let view = parse_str(r#"{"userId":"u1","integrations":{"All":"false","Amplitude":"no"}}"#)
            .unwrap();
        assert_eq!(view.integrations, Integrations::default());
    }

    #[test]
    fn non_object_integrations_say_nothing() {
        let view = parse_str(r#"{"userId":"u1","integrations":false}"#).unwrap();
        assert_eq!(view.integrations, Integrations::default());
    }
}
