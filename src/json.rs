//! Small serde seeds shared by the event and consent-record readers: they read JSON straight
//! from the input bytes into interned bits, skipping (but still validating) everything else.

use std::cell::Cell;
use std::fmt;
use std::sync::LazyLock;

use memchr::memmem;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::vocabulary::{CategorySet, Vocabulary};

/// Shared by the seeds below: the names to intern against, and where a duplicate is noted.
/// A duplicate does not stop parsing, because invalid JSON later in the value must still be
/// classified `not_json`, which comes first.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'v> {
    pub(crate) vocabulary: &'v Vocabulary,
    pub(crate) duplicate: &'v Cell<bool>,
    /// Names in consent preferences that are neither a category nor an alias.
    pub(crate) unknown_names: &'v Cell<u32>,
}

impl Scope<'_> {
    /// Marks `bit` in `seen`, noting a duplicate if it was already there.
    pub(crate) fn see(&self, seen: &mut u32, bit: u32) {
        if *seen & bit != 0 {
            self.duplicate.set(true);
        }
        *seen |= bit;
    }
}

/// Whether `text`, which must be valid JSON, has an unpaired surrogate escape (`"\ud800"`) in
/// any string: no UTF-8 text can hold that string, so the value is not UTF-8 JSON. serde_json
/// refuses one in the strings it decodes, not in those it skips.
pub(crate) fn has_unpaired_surrogate(text: &str) -> bool {
    static UNICODE_ESCAPE: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\\u"));
    let bytes = text.as_bytes();
    // Most events have no escape at all, which memchr finds out at a few bytes per cycle.
    let Some(mut from) = memchr::memchr(b'\\', bytes) else {
        return false;
    };
    let hex = |at: usize| {
        let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    while let Some(found) = bytes.get(from..).and_then(|rest| UNICODE_ESCAPE.find(rest)) {
        let at = from + found;
        from = at + 2;
        // In valid JSON every backslash is in a string, and this one starts an escape unless
        // an odd number of backslashes precede it (`\\u` is a backslash, then `u`).
        let escaped = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if escaped % 2 == 1 {
            continue;
        }
        from = at + 6;
        match hex(at + 2) {
            Some(0xD800..=0xDBFF) => {
                if bytes.get(at + 6..at + 8) != Some(b"\\u")
                    || !matches!(hex(at + 8), Some(0xDC00..=0xDFFF))
                {
                    return true;
                }
                from = at + 12;
            }
            Some(0xDC00..=0xDFFF) => return true,
            _ => {}
        }
    }
    false
}

/// Whether serde_json refused a number beyond the range of `f64` (`1e400`), which is valid JSON.
/// It does so wherever a value is read with `deserialize_any` (skipped values are only scanned).
/// serde_json has no public error code; `number_out_of_range_is_recognised` pins its message.
pub(crate) fn is_number_out_of_range(error: &serde_json::Error) -> bool {
    error.is_syntax() && error.to_string().starts_with("number out of range")
}

/// `text` with every number replaced by `0`, for reading again a value in which serde_json
/// refused a number ([`is_number_out_of_range`]). Every visitor here reads all numbers alike
/// (as "not the type wanted"), so the copy reads as the original would. Only a whole number
/// between delimiters is replaced, and strings are left alone, so the copy is valid JSON
/// exactly when the original is.
pub(crate) fn with_numbers_zeroed(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut zeroed = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    let mut in_string = false;
    while at < bytes.len() {
        let byte = bytes[at];
        if in_string {
            match byte {
                b'\\' => at += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else if (byte == b'-' || byte.is_ascii_digit())
            && (at == 0 || is_delimiter(bytes[at - 1]))
        {
            let end = at + number_len(&bytes[at..]);
            if end > at && bytes.get(end).is_none_or(|&next| is_delimiter(next)) {
                // Both ends are ASCII, so both are char boundaries.
                zeroed.push_str(&text[copied..at]);
                zeroed.push('0');
                copied = end;
                at = end;
                continue;
            }
        }
        at += 1;
    }
    zeroed.push_str(&text[copied..]);
    zeroed
}

fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' | b'[' | b']' | b'{' | b'}'
    )
}

/// Length of the JSON number at the start of `bytes`
/// (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), or 0 if there is none.
fn number_len(bytes: &[u8]) -> usize {
    let digits = |from: usize| {
        bytes[from.min(bytes.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut at = usize::from(bytes.first() == Some(&b'-'));
    match bytes.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at += digits(at),
        _ => return 0,
    }
    if bytes.get(at) == Some(&b'.') && digits(at + 1) > 0 {
        at += 1 + digits(at + 1);
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(at + 1), Some(b'+' | b'-')));
        let exponent = digits(at + 1 + sign);
        if exponent > 0 {
            at += 1 + sign + exponent;
        }
    }
    at
}

/// The visitors below accept any JSON value, because a field of an unexpected type is not an
/// error here (it counts as absent); such values are still consumed so that their syntax is
/// checked. This supplies the methods for numbers, null and arrays, which no visitor reads.
macro_rules! skip_numbers_null_and_arrays {
    ($value:ty) => {
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<$value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<$value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<$value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<$value, E> {
            Ok(Default::default())
        }
        fn visit_seq<A: ::serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<$value, A::Error> {
            while seq.next_element::<::serde::de::IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

pub(crate) use skip_numbers_null_and_arrays;

/// `DeserializeSeed` for a seed that is also the `Visitor` of any JSON value.
macro_rules! seed_of_any_value {
    ($seed:ty => $value:ty) => {
        impl<'de> ::serde::de::DeserializeSeed<'de> for $seed {
            type Value = $value;

            fn deserialize<D: ::serde::de::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Self::Value, D::Error> {
                deserializer.deserialize_any(self)
            }
        }
    };
}
pub(crate) use seed_of_any_value;

/// Skips the remaining entries of an object.
pub(crate) fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// `visit_bool` and `visit_str` for visitors to which booleans and strings mean nothing.
macro_rules! skip_bools_and_strings {
    ($value:ty) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<$value, E> {
            Ok(Default::default())
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<$value, E> {
            Ok(Default::default())
        }
    };
}
pub(crate) use skip_bools_and_strings;

/// Reads an object key and returns its position in a fixed list, without allocating
/// (escaped keys are decoded by serde_json into a scratch buffer).
pub(crate) struct KeySeed<'k>(pub(crate) &'k [&'static str]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|known| *known == key))
    }
}

/// Reads an object key and maps it through `lookup`, without allocating.
pub(crate) struct NameSeed<F> {
    pub(crate) lookup: F,
}

impl<'de, T, F: FnOnce(&str) -> Option<T>> DeserializeSeed<'de> for NameSeed<F> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, T, F: FnOnce(&str) -> Option<T>> Visitor<'de> for NameSeed<F> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok((self.lookup)(key))
    }
}

/// The kind of a JSON value, as far as `integrations` entries and category grants care.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Flag {
    False,
    True,
    /// An object (per-integration options in `integrations`).
    Object,
    #[default]
    Other,
}

pub(crate) struct FlagSeed;

seed_of_any_value!(FlagSeed => Flag);

impl<'de> Visitor<'de> for FlagSeed {
    type Value = Flag;

    skip_numbers_null_and_arrays!(Flag);

    fn visit_bool<E: serde::de::Error>(self, flag: bool) -> Result<Flag, E> {
        Ok(if flag { Flag::True } else { Flag::False })
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Flag, E> {
        Ok(Flag::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Flag, A::Error> {
        skip_map(map)?;
        Ok(Flag::Object)
    }
}

/// A `categoryPreferences` object: the known categories whose value is JSON `true`.
/// `None` when the value is not an object.
pub(crate) struct GrantsSeed<'v>(pub(crate) Scope<'v>);

seed_of_any_value!(GrantsSeed<'_> => Option<CategorySet>);

impl<'de> Visitor<'de> for GrantsSeed<'_> {
    type Value = Option<CategorySet>;

    skip_numbers_null_and_arrays!(Option<CategorySet>);
    skip_bools_and_strings!(Option<CategorySet>);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let scope = self.0;
        let mut granted = CategorySet::EMPTY;
        // A category named twice (by its name and an alias, or by two aliases) is granted
        // only if every name grants it; the same name twice is a duplicate key.
        let mut denied = CategorySet::EMPTY;
        let mut seen: u128 = 0;
        while let Some(key) = map.next_key_seed(NameSeed {
            lookup: |name: &str| scope.vocabulary.category_name_of(name),
        })? {
            match key {
                Some(name) => {
                    let number = 1u128 << name.number;
                    if seen & number != 0 {
                        scope.duplicate.set(true);
                    }
                    seen |= number;
                    // Only JSON `true` grants.
                    let grants = map.next_value_seed(FlagSeed)? == Flag::True;
                    if let Some(bit) = name.bit {
                        if grants {
                            granted.insert(bit);
                        } else {
                            denied.insert(bit);
                        }
                    }
                }
                None => {
                    scope.unknown_names.set(scope.unknown_names.get() + 1);
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(granted.without(denied)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaired_surrogates_are_found_in_any_string() {
        for text in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"x\uDBFFy"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"\ud83d":1}"#,
            r#"["\ud83d\u0041"]"#,
            r#"["\ud83d\n"]"#,
            r#"["\\\ud83d"]"#,
            r#"["\ud83d\\ude00"]"#,
            r#"["a\/b\"c\\d\\\\", "\ud800"]"#,
        ] {
            assert!(has_unpaired_surrogate(text), "{text}");
        }
        for text in [
            r#"{"a":"\ud83d\ude00 \u00e9 \u0000"}"#,
            r#"{"a":"\\ud800"}"#,
            r#"{"a":"\\\\ud800","b":"\\"}"#,
            r#"{"a":"no escapes at all"}"#,
        ] {
            assert!(!has_unpaired_surrogate(text), "{text}");
        }
    }

    #[test]
    fn number_out_of_range_is_recognised() {
        let error = serde_json::from_str::<serde_json::Value>("[1e400]").unwrap_err();
        assert!(is_number_out_of_range(&error), "{error}");
        let error = serde_json::from_str::<serde_json::Value>("[1e4x]").unwrap_err();
        assert!(!is_number_out_of_range(&error), "{error}");
    }

    #[test]
    fn whole_numbers_are_zeroed_and_strings_kept() {
        assert_eq!(
            with_numbers_zeroed(r#"{"a":1e400,"b":[-12.5E+3, 0],"c":"1e400\"2","d":7}"#),
            r#"{"a":0,"b":[0, 0],"c":"1e400\"2","d":0}"#
        );
    }

    #[test]
    fn invalid_numbers_are_left_invalid() {
        for text in [
            "[1e400.5]",
            "[01]",
            "[1.]",
            "[-]",
            "[1e]",
            "[1e400x]",
            "[--1]",
            "[.5]",
        ] {
            let zeroed = with_numbers_zeroed(text);
            assert!(
                serde_json::from_str::<IgnoredAny>(&zeroed).is_err(),
                "{text} became {zeroed}"
            );
        }
    }
}
