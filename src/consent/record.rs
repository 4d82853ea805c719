//! Parses one record of the consent topic: key = user identifier, value =
//! `{"categoryPreferences": {...}, "updatedAt": "<RFC 3339>"}` or null (a tombstone).

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Message};

use super::ConsentState;
use crate::config::ConsentFormat;
use crate::json::{
    self, seed_of_any_value, skip_bools_and_strings, skip_numbers_null_and_arrays, GrantsSeed,
    KeySeed, Scope,
};
use crate::vocabulary::{BitKind, CategorySet, Vocabulary};

/// What a valid consent record asks of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentUpdate {
    Set(ConsentState),
    /// A null value: forget the user, whatever the time.
    Remove,
}

/// Why a consent record is rejected; `as_str` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Null or not UTF-8: there is no user to apply it to.
    BadKey,
    /// Longer than [`MAX_IDENTIFIER_BYTES`].
    KeyTooLong,
    NotJson,
    NotObject,
    DuplicateKey,
    /// `categoryPreferences` is missing or not an object.
    BadPreferences,
    /// `updatedAt` is not an RFC 3339 string.
    BadUpdatedAt,
    /// Not a protobuf `ConsentState` (`proto/consent.proto`).
    NotProtobuf,
    /// Older than the stored state (not a format error: counted with the rejections because
    /// the record is not applied).
    Stale,
}

impl Rejection {
    pub const ALL: [Rejection; 9] = [
        Rejection::BadKey,
        Rejection::KeyTooLong,
        Rejection::NotJson,
        Rejection::NotObject,
        Rejection::DuplicateKey,
        Rejection::BadPreferences,
        Rejection::BadUpdatedAt,
        Rejection::NotProtobuf,
        Rejection::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::BadKey => "bad_key",
            Rejection::KeyTooLong => "key_too_long",
            Rejection::NotJson => "not_json",
            Rejection::NotObject => "not_object",
            Rejection::DuplicateKey => "duplicate_key",
            Rejection::BadPreferences => "bad_preferences",
            Rejection::BadUpdatedAt => "bad_updated_at",
            Rejection::NotProtobuf => "not_protobuf",
            Rejection::Stale => "stale",
        }
    }
}

/// The longest user identifier the enforcer stores. A consent record keyed by a longer one
/// is rejected (`key_too_long`), and an event carrying one is judged as if its identifier had
/// a malformed record: granted nothing, now and at its time (fail closed). Real identifiers
/// (UUIDs, hashes, e-mail addresses) are far shorter; the cap keeps a crafted key from costing
/// memory up to the record size.
pub const MAX_IDENTIFIER_BYTES: usize = 512;

/// The user identifier of a consent record.
pub fn parse_key(key: Option<&[u8]>) -> Result<&str, Rejection> {
    let key = key
        .and_then(|key| std::str::from_utf8(key).ok())
        .ok_or(Rejection::BadKey)?;
    if key.len() > MAX_IDENTIFIER_BYTES {
        return Err(Rejection::KeyTooLong);
    }
    Ok(key)
}

/// Parses a JSON consent value. `record_time_ms` (the Kafka timestamp) stands in for a missing
/// `updatedAt`.
pub fn parse_value(
    value: Option<&[u8]>,
    record_time_ms: i64,
    vocabulary: &Vocabulary,
) -> Result<ConsentUpdate, Rejection> {
    read_value(value, Encoding::Json, record_time_ms, vocabulary).update
}

/// How one consent value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Protobuf,
}

impl Encoding {
    /// The encoding of a record under `consent.format`: with `auto`, its `content-type`
    /// header (`application/x-protobuf`, `application/protobuf` or `application/json`, any
    /// parameters ignored), else JSON when its first byte other than a space, tab or CR is
    /// `{`, else protobuf. (A line feed is protobuf's tag of field 1, so it is not skipped.)
    pub fn of(format: ConsentFormat, content_type: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        match format {
            ConsentFormat::Json => Encoding::Json,
            ConsentFormat::Protobuf => Encoding::Protobuf,
            ConsentFormat::Auto => content_type
                .and_then(Encoding::from_content_type)
                .unwrap_or_else(|| Encoding::sniffed(value.unwrap_or_default())),
        }
    }

    fn from_content_type(value: &[u8]) -> Option<Encoding> {
        let media = value.split(|&b| b == b';').next()?;
        let media = std::str::from_utf8(media).ok()?.trim();
        if media.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else if media.eq_ignore_ascii_case("application/x-protobuf")
            || media.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Encoding::Protobuf)
        } else {
            None
        }
    }

    fn sniffed(value: &[u8]) -> Encoding {
        match value.iter().find(|&&b| !matches!(b, b' ' | b'\t' | b'\r')) {
            Some(b'{') => Encoding::Json,
            _ => Encoding::Protobuf,
        }
    }
}

/// The `content-type` header of a record (the first, its name in any case).
pub fn content_type(headers: Option<&BorrowedHeaders>) -> Option<&[u8]> {
    crate::delivery::headers::raw(headers?)
        .find(|header| header.name.eq_ignore_ascii_case(b"content-type"))
        .and_then(|header| header.value)
}

/// Reads a consent record's value in the encoding `consent.format` gives it.
pub fn read_message(
    message: &BorrowedMessage<'_>,
    format: ConsentFormat,
    record_time_ms: i64,
    vocabulary: &Vocabulary,
) -> ReadValue {
    let encoding = Encoding::of(format, content_type(message.headers()), message.payload());
    read_value(message.payload(), encoding, record_time_ms, vocabulary)
}

/// A consent value as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadValue {
    pub update: Result<ConsentUpdate, Rejection>,
    /// Category names (or IDs) in it that are neither a category a destination needs nor an
    /// alias.
    pub unknown_names: u32,
}

/// Parses a consent value in `encoding`. `record_time_ms` (the Kafka timestamp) stands in
/// for a missing `updatedAt`. A null value is a tombstone in either encoding.
pub fn read_value(
    value: Option<&[u8]>,
    encoding: Encoding,
    record_time_ms: i64,
    vocabulary: &Vocabulary,
) -> ReadValue {
    let Some(bytes) = value else {
        return ReadValue {
            update: Ok(ConsentUpdate::Remove),
            unknown_names: 0,
        };
    };
    match encoding {
        Encoding::Json => read_json(bytes, record_time_ms, vocabulary),
        Encoding::Protobuf => protobuf::read(bytes, record_time_ms, vocabulary),
    }
}

fn read_json(bytes: &[u8], record_time_ms: i64, vocabulary: &Vocabulary) -> ReadValue {
    let mut unknown_names = 0;
    let update = (|| {
        let text = std::str::from_utf8(bytes).map_err(|_| Rejection::NotJson)?;
        let (fields, duplicate) = match read(text, vocabulary) {
            // Valid JSON all the same: read it again with its numbers zeroed (cold path).
            Err(error) if json::is_number_out_of_range(&error) => {
                read(&json::with_numbers_zeroed(text), vocabulary)
            }
            read => read,
        }
        .map_err(|_| Rejection::NotJson)?;
        if json::has_unpaired_surrogate(text) {
            return Err(Rejection::NotJson);
        }
        let fields = fields.ok_or(Rejection::NotObject)?;
        unknown_names = fields.unknown_names;
        if duplicate {
            return Err(Rejection::DuplicateKey);
        }
        let granted = fields.granted.ok_or(Rejection::BadPreferences)?;
        let updated_at_ms = match fields.updated_at {
            UpdatedAt::Missing => record_time_ms,
            UpdatedAt::Millis(ms) => ms,
            UpdatedAt::Invalid => return Err(Rejection::BadUpdatedAt),
        };
        Ok(ConsentUpdate::Set(ConsentState {
            granted: granted.union(fields.subscribed).union(fields.facts),
            updated_at_ms,
        }))
    })();
    ReadValue {
        update,
        unknown_names,
    }
}

/// Reads the whole of `text`: the fields (`None` if it is not an object) and whether a field
/// read appeared twice.
fn read(
    text: &str,
    vocabulary: &Vocabulary,
) -> Result<(Option<RecordFields>, bool), serde_json::Error> {
    let duplicate = Cell::new(false);
    let unknown_names = Cell::new(0);
    let scope = Scope {
        vocabulary,
        duplicate: &duplicate,
        unknown_names: &unknown_names,
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let mut fields = RecordSeed(scope).deserialize(&mut deserializer)?;
    deserializer.end()?;
    if let Some(fields) = &mut fields {
        fields.unknown_names = unknown_names.get();
    }
    Ok((fields, duplicate.get()))
}

/// Parses RFC 3339 to Unix milliseconds (sub-millisecond digits are truncated toward the past).
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    // RFC 3339 separates date and time with "T" (either case; its note allows a space); the
    // parser below takes any byte there.
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(time.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// Formats Unix milliseconds as RFC 3339, in UTC when its years (0000 to 9999) can hold the
/// instant, else at the offset of at most 23:59 that brings it inside them: every instant
/// [`parse_rfc3339_ms`] reads (`"0000-01-01T00:00:00+01:00"` is in the year -1 in UTC) is
/// written so that it reads back.
pub fn format_rfc3339_ms(ms: i64) -> String {
    [(0, 0), (23, 59), (-23, -59)]
        .into_iter()
        .find_map(|(hours, minutes)| {
            let offset = UtcOffset::from_hms(hours, minutes, 0).ok()?;
            // The local time at that offset, stamped with it.
            let local_ms = ms.checked_add(i64::from(offset.whole_seconds()) * 1_000)?;
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(local_ms) * 1_000_000)
                .ok()?
                .replace_offset(offset)
                .format(&Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// What the enforcer re-publishes for a user failed closed, after a stale record: not a valid
/// consent record (`categoryPreferences` is not an object), so reading it back fails the user
/// closed again instead of bringing back the grants from before the malformed record.
pub const FAILED_CLOSED_VALUE: &str = r#"{"categoryPreferences":null,"consentEnforcer":"failed closed: the last valid record was followed by a malformed one"}"#;

/// Encodes a state the way the consent topic carries it, for re-publishing. Only the
/// categories the configuration knows are in the table, so only those are written.
pub fn encode_value(state: &ConsentState, vocabulary: &Vocabulary) -> Vec<u8> {
    if state.is_failed_closed() {
        // Read back (after a restart and compaction too) as malformed: failed closed again.
        return FAILED_CLOSED_VALUE.as_bytes().to_vec();
    }
    let (channels, categories): (Vec<u8>, Vec<u8>) = (0..vocabulary.bit_count())
        .filter(|&bit| vocabulary.is_channel(bit) || vocabulary.is_category(bit))
        .partition(|&bit| vocabulary.is_channel(bit));
    let preferences: serde_json::Map<String, serde_json::Value> = categories
        .into_iter()
        .map(|bit| {
            (
                vocabulary.bit_name(bit).to_owned(),
                serde_json::Value::Bool(state.granted.contains(bit)),
            )
        })
        .collect();
    let mut value = serde_json::json!({
        "categoryPreferences": preferences,
        "updatedAt": format_rfc3339_ms(state.updated_at_ms),
    });
    // A channel not listed is not subscribed.
    let subscribed: serde_json::Map<String, serde_json::Value> = channels
        .into_iter()
        .filter(|&bit| state.granted.contains(bit))
        .map(|bit| (vocabulary.bit_name(bit).to_owned(), "subscribed".into()))
        .collect();
    if !subscribed.is_empty() {
        value["subscriptions"] = subscribed.into();
    }
    for bit in (0..vocabulary.bit_count()).filter(|&bit| state.granted.contains(bit)) {
        match vocabulary.kind(bit) {
            BitKind::Gpc => value["gpc"] = true.into(),
            BitKind::Jurisdiction => value["jurisdiction"] = vocabulary.bit_name(bit).into(),
            BitKind::Category | BitKind::Channel => {}
        }
    }
    value.to_string().into_bytes()
}

#[derive(Default)]
enum UpdatedAt {
    #[default]
    Missing,
    Millis(i64),
    Invalid,
}

#[derive(Default)]
struct RecordFields {
    granted: Option<CategorySet>,
    updated_at: UpdatedAt,
    /// The channel bits of the channels the user is `subscribed` on.
    subscribed: CategorySet,
    /// The jurisdiction bit `jurisdiction` names, and the GPC bit when `gpc` is `true`.
    facts: CategorySet,
    unknown_names: u32,
}

struct RecordSeed<'v>(Scope<'v>);

// `None` when the value is valid JSON but not an object.
seed_of_any_value!(RecordSeed<'_> => Option<RecordFields>);

const FIELDS: [&str; 5] = [
    "categoryPreferences",
    "updatedAt",
    "subscriptions",
    "jurisdiction",
    "gpc",
];

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Option<RecordFields>;

    skip_numbers_null_and_arrays!(Option<RecordFields>);
    skip_bools_and_strings!(Option<RecordFields>);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = RecordFields::default();
        let mut seen = 0;
        while let Some(key) = map.next_key_seed(KeySeed(&FIELDS))? {
            match key {
                Some(0) => {
                    self.0.see(&mut seen, 1);
                    fields.granted = map.next_value_seed(GrantsSeed(self.0))?;
                }
                Some(1) => {
                    self.0.see(&mut seen, 2);
                    fields.updated_at = map.next_value_seed(UpdatedAtSeed)?;
                }
                // Each read, and so checked for duplicates, only where the decision uses it:
                // a config without channels or jurisdictions decides as it did before.
                Some(2) if !self.0.vocabulary.channels().is_empty() => {
                    self.0.see(&mut seen, 4);
                    fields.subscribed = map.next_value_seed(SubscriptionsSeed(self.0))?;
                }
                Some(3) if self.0.vocabulary.has_jurisdictions() => {
                    self.0.see(&mut seen, 8);
                    let named = map.next_value_seed(crate::event::StringSeed)?;
                    if let Some(bit) = named.and_then(|n| self.0.vocabulary.jurisdiction_named(&n))
                    {
                        fields.facts.insert(bit);
                    }
                }
                Some(4) if self.0.vocabulary.has_jurisdictions() => {
                    self.0.see(&mut seen, 16);
                    let signal =
                        map.next_value_seed(crate::json::FlagSeed)? == crate::json::Flag::True;
                    if let (true, Some(bit)) = (signal, self.0.vocabulary.gpc()) {
                        fields.facts.insert(bit);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(fields))
    }
}

/// `updatedAt`: an RFC 3339 string; `null` counts as missing, anything else is invalid.
struct UpdatedAtSeed;

seed_of_any_value!(UpdatedAtSeed => UpdatedAt);

impl<'de> Visitor<'de> for UpdatedAtSeed {
    type Value = UpdatedAt;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<UpdatedAt, E> {
        Ok(parse_rfc3339_ms(text).map_or(UpdatedAt::Invalid, UpdatedAt::Millis))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<UpdatedAt, E> {
        Ok(UpdatedAt::Missing)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<UpdatedAt, E> {
        Ok(UpdatedAt::Invalid)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<UpdatedAt, E> {
        Ok(UpdatedAt::Invalid)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<UpdatedAt, E> {
        Ok(UpdatedAt::Invalid)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<UpdatedAt, E> {
        Ok(UpdatedAt::Invalid)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UpdatedAt, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(UpdatedAt::Invalid)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<UpdatedAt, A::Error> {
        crate::json::skip_map(map)?;
        Ok(UpdatedAt::Invalid)
    }
}

mod protobuf;
mod subscriptions;

pub use protobuf::encode_protobuf;
use subscriptions::SubscriptionsSeed;

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod tests;
