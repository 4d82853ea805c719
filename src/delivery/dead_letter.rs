//! The dead-letter record: the event's key, value and headers as they came (or, with
//! `dead_letter.payload = "drop"`, its headers only), plus headers saying why and from where.

use rdkafka::message::{BorrowedHeaders, Header, OwnedHeaders};

use crate::event::Malformed;

/// Header carrying the reason (`Malformed::as_str`).
pub const ERROR_HEADER: &str = "consent-enforcer-error";
/// Header carrying `topic/partition/offset` of the input record.
pub const SOURCE_HEADER: &str = "consent-enforcer-source";

/// The event's own headers (but those of reserved names), the reason and the source
/// (`topic`, `partition`, `offset`).
pub fn headers(
    input: Option<&BorrowedHeaders>,
    reason: Malformed,
    source: (&str, i32, i64),
) -> OwnedHeaders {
    let headers = super::headers::without_reserved(input)
        .unwrap_or_else(|| OwnedHeaders::new_with_capacity(2));
    with_reason(headers, reason, source)
}

/// For a dead letter too large for its topic, sent without the original value and headers:
/// the reason, the source, and the value's size in bytes.
pub fn without_original(
    reason: Malformed,
    source: (&str, i32, i64),
    value_bytes: usize,
) -> OwnedHeaders {
    with_original_size(
        with_reason(OwnedHeaders::new_with_capacity(3), reason, source),
        value_bytes,
    )
}

/// Header of a dead letter of a held record: the held event's source (`topic/partition/offset`
/// of the input record it came from).
pub const HELD_SOURCE_HEADER: &str = "consent-enforcer-held-source";

pub fn with_held_source(headers: OwnedHeaders, held_source: &str) -> OwnedHeaders {
    headers.insert(Header {
        key: HELD_SOURCE_HEADER,
        value: Some(held_source),
    })
}

/// `headers` and the size in bytes of the value a dead letter was written without.
pub fn with_original_size(headers: OwnedHeaders, value_bytes: usize) -> OwnedHeaders {
    let size = value_bytes.to_string();
    headers.insert(Header {
        key: super::limits::ORIGINAL_SIZE_HEADER,
        value: Some(size.as_str()),
    })
}

fn with_reason(
    headers: OwnedHeaders,
    reason: Malformed,
    (topic, partition, offset): (&str, i32, i64),
) -> OwnedHeaders {
    let source = format!("{topic}/{partition}/{offset}");
    headers
        .insert(Header {
            key: ERROR_HEADER,
            value: Some(reason.as_str()),
        })
        .insert(Header {
            key: SOURCE_HEADER,
            value: Some(source.as_str()),
        })
}
