//! Which of an event's headers the enforcer writes on: all but those named
//! `consent-enforcer-*`, the prefix of its own. An input header of such a name, set by a
//! producer or an earlier pipeline, would otherwise stand beside (or before) the enforcer's
//! own in a destination, a held record or a dead letter, and mislead whoever reads it.

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};

/// The prefix of every header the enforcer sets; matched without regard to ASCII case.
pub const RESERVED_PREFIX: &str = "consent-enforcer-";

pub fn is_reserved(key: &str) -> bool {
    key.as_bytes()
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes()))
}

/// How many of `input`'s headers have a reserved name.
pub fn reserved_count(input: Option<&BorrowedHeaders>) -> usize {
    input.map_or(0, |headers| {
        headers.iter().filter(|h| is_reserved(h.key)).count()
    })
}

/// `input`'s headers without those of reserved names; `None` when none remain.
pub fn without_reserved(input: Option<&BorrowedHeaders>) -> Option<OwnedHeaders> {
    let input = input.filter(|h| h.count() > 0)?;
    if reserved_count(Some(input)) == 0 {
        return Some(input.detach());
    }
    let kept: Vec<_> = input.iter().filter(|h| !is_reserved(h.key)).collect();
    if kept.is_empty() {
        return None;
    }
    let mut headers = OwnedHeaders::new_with_capacity(kept.len());
    for header in kept {
        headers = headers.insert(Header {
            key: header.key,
            value: header.value,
        });
    }
    Some(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_matched_by_prefix_without_regard_to_case() {
        for key in [
            "consent-enforcer-error",
            "Consent-Enforcer-Source",
            "CONSENT-ENFORCER-x",
            "consent-enforcer-",
        ] {
            assert!(is_reserved(key), "{key}");
        }
        for key in ["consent-enforcer", "x-consent-enforcer-error", "origin", ""] {
            assert!(!is_reserved(key), "{key}");
        }
    }
}
