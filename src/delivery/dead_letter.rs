//! The dead-letter record: the event's key, value and headers as they came, plus two headers
//! saying why and from where.

use rdkafka::message::{BorrowedHeaders, Header, OwnedHeaders};

use crate::event::Malformed;

/// Header carrying the reason (`Malformed::as_str`).
pub const ERROR_HEADER: &str = "consent-enforcer-error";
/// Header carrying `topic/partition/offset` of the input record.
pub const SOURCE_HEADER: &str = "consent-enforcer-source";

pub fn headers(
    input: Option<&BorrowedHeaders>,
    reason: Malformed,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OwnedHeaders {
    let headers = match input {
        Some(headers) => headers.detach(),
        None => OwnedHeaders::new_with_capacity(2),
    };
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
