//! One record of the privacy-requests topic: key = user identifier, value =
//! `{"type": "SUPPRESS" | "SUPPRESS_WITH_DELETE" | "DELETE_ONLY" | "UNSUPPRESS",
//! "requestedAt": "<RFC 3339>"}` (or `proto/consent.proto`'s `PrivacyRequest`), or null.

use prost::Message;
use serde::Deserialize;

use crate::consent::record::{parse_rfc3339_ms, Encoding};
use crate::proto;

/// What a valid privacy request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    Suppress,
    SuppressWithDelete,
    DeleteOnly,
    Unsuppress,
}

impl RequestType {
    /// Whether the user's events are to reach no destination after it.
    pub fn suppresses(self) -> bool {
        matches!(
            self,
            RequestType::Suppress | RequestType::SuppressWithDelete
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Suppress => "SUPPRESS",
            RequestType::SuppressWithDelete => "SUPPRESS_WITH_DELETE",
            RequestType::DeleteOnly => "DELETE_ONLY",
            RequestType::Unsuppress => "UNSUPPRESS",
        }
    }

    fn parse(text: &str) -> Option<RequestType> {
        [
            RequestType::Suppress,
            RequestType::SuppressWithDelete,
            RequestType::DeleteOnly,
            RequestType::Unsuppress,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }
}

/// A privacy request as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivacyUpdate {
    Request {
        kind: RequestType,
        /// `requestedAt`, else the record's Kafka timestamp.
        requested_at_ms: i64,
        /// `deletedAt`: the enforcer wrote the deletion records this request asks for.
        deleted: bool,
    },
    /// A null value: the user's request is withdrawn.
    Remove,
}

/// Why a privacy record is rejected; `as_str` is the metric label. A rejected record leaves
/// its identifier suppressed (fail closed) until a valid request replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrivacyRejection {
    BadKey,
    NotJson,
    NotProtobuf,
    /// `type` is missing or not one of the four.
    UnknownType,
    BadRequestedAt,
}

impl PrivacyRejection {
    pub const ALL: [PrivacyRejection; 5] = [
        PrivacyRejection::BadKey,
        PrivacyRejection::NotJson,
        PrivacyRejection::NotProtobuf,
        PrivacyRejection::UnknownType,
        PrivacyRejection::BadRequestedAt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PrivacyRejection::BadKey => "bad_key",
            PrivacyRejection::NotJson => "not_json",
            PrivacyRejection::NotProtobuf => "not_protobuf",
            PrivacyRejection::UnknownType => "unknown_type",
            PrivacyRejection::BadRequestedAt => "bad_requested_at",
        }
    }
}

#[derive(Deserialize)]
struct JsonRequest {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    #[serde(rename = "requestedAt")]
    requested_at: Option<serde_json::Value>,
    #[serde(rename = "deletedAt")]
    deleted_at: Option<serde_json::Value>,
}

/// Reads a privacy request's value in `encoding`; `record_time_ms` stands in for a missing
/// `requestedAt`.
pub fn read_request(
    value: Option<&[u8]>,
    encoding: Encoding,
    record_time_ms: i64,
) -> Result<PrivacyUpdate, PrivacyRejection> {
    let Some(bytes) = value else {
        return Ok(PrivacyUpdate::Remove);
    };
    let (kind, requested_at_ms, deleted) = match encoding {
        Encoding::Json => {
            // An object (serde would also take an array for the struct); a field twice is an
            // error of serde's, so a request that reads two ways is rejected.
            let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            let request: JsonRequest = serde_json::from_slice(bytes)
                .ok()
                .filter(|_| object)
                .ok_or(PrivacyRejection::NotJson)?;
            let kind = match request.kind {
                Some(serde_json::Value::String(text)) => RequestType::parse(&text),
                _ => None,
            }
            .ok_or(PrivacyRejection::UnknownType)?;
            let at = match request.requested_at {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(text)) => {
                    Some(parse_rfc3339_ms(&text).ok_or(PrivacyRejection::BadRequestedAt)?)
                }
                Some(_) => return Err(PrivacyRejection::BadRequestedAt),
            };
            // Only the enforcer writes it; any value but null marks the request done.
            let deleted = !matches!(request.deleted_at, None | Some(serde_json::Value::Null));
            (kind, at, deleted)
        }
        Encoding::Protobuf => {
            let request =
                proto::PrivacyRequest::decode(bytes).map_err(|_| PrivacyRejection::NotProtobuf)?;
            let kind = match proto::PrivacyRequestType::try_from(request.r#type) {
                Ok(proto::PrivacyRequestType::Suppress) => RequestType::Suppress,
                Ok(proto::PrivacyRequestType::SuppressWithDelete) => {
                    RequestType::SuppressWithDelete
                }
                Ok(proto::PrivacyRequestType::DeleteOnly) => RequestType::DeleteOnly,
                Ok(proto::PrivacyRequestType::Unsuppress) => RequestType::Unsuppress,
                _ => return Err(PrivacyRejection::UnknownType),
            };
            (
                kind,
                request.requested_at_ms,
                request.deleted_at_ms.is_some(),
            )
        }
    };
    // Capped at the record's timestamp, as a consent state's `updatedAt` is: a request dated
    // ahead would make every real request after it stale.
    Ok(PrivacyUpdate::Request {
        kind,
        requested_at_ms: requested_at_ms.map_or(record_time_ms, |at| at.min(record_time_ms)),
        deleted,
    })
}

impl RequestType {
    /// Whether it asks for the user's data to be deleted downstream.
    pub fn deletes(self) -> bool {
        matches!(
            self,
            RequestType::SuppressWithDelete | RequestType::DeleteOnly
        )
    }
}

/// The request, written back marked done (`deletedAt`), in `encoding`.
pub fn encode_done(
    kind: RequestType,
    requested_at_ms: i64,
    deleted_at_ms: i64,
    encoding: Encoding,
) -> Vec<u8> {
    match encoding {
        Encoding::Json => serde_json::json!({
            "type": kind.as_str(),
            "requestedAt": crate::consent::record::format_rfc3339_ms(requested_at_ms),
            "deletedAt": crate::consent::record::format_rfc3339_ms(deleted_at_ms),
        })
        .to_string()
        .into_bytes(),
        Encoding::Protobuf => proto::PrivacyRequest {
            r#type: match kind {
                RequestType::Suppress => proto::PrivacyRequestType::Suppress,
                RequestType::SuppressWithDelete => proto::PrivacyRequestType::SuppressWithDelete,
                RequestType::DeleteOnly => proto::PrivacyRequestType::DeleteOnly,
                RequestType::Unsuppress => proto::PrivacyRequestType::Unsuppress,
            } as i32,
            requested_at_ms: Some(requested_at_ms),
            deleted_at_ms: Some(deleted_at_ms),
        }
        .encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<PrivacyUpdate, PrivacyRejection> {
        read_request(Some(text.as_bytes()), Encoding::Json, i64::MAX)
    }

    #[test]
    fn the_four_types_are_read_and_anything_else_is_rejected() {
        assert_eq!(
            json(r#"{"type":"SUPPRESS","requestedAt":"2026-11-22T10:00:00Z"}"#),
            Ok(PrivacyUpdate::Request {
                kind: RequestType::Suppress,
                requested_at_ms: 1_795_341_600_000,
                deleted: false,
            })
        );
        assert_eq!(
            json(r#"{"type":"UNSUPPRESS"}"#),
            Ok(PrivacyUpdate::Request {
                kind: RequestType::Unsuppress,
                requested_at_ms: i64::MAX,
                deleted: false,
            })
        );
        for kind in ["SUPPRESS_WITH_DELETE", "DELETE_ONLY"] {
            assert!(json(&format!(r#"{{"type":"{kind}"}}"#)).is_ok());
        }
        for text in [
            r#"{"type":"suppress"}"#,
            r#"{"type":"FORGET"}"#,
            r#"{"type":1}"#,
            "{}",
        ] {
            assert_eq!(json(text), Err(PrivacyRejection::UnknownType), "{text}");
        }
        assert_eq!(json("nope"), Err(PrivacyRejection::NotJson));
        assert_eq!(json("[1]"), Err(PrivacyRejection::NotJson));
        assert_eq!(
            json(r#"["SUPPRESS", null]"#),
            Err(PrivacyRejection::NotJson)
        );
        assert_eq!(
            json(r#"{"type":"SUPPRESS","type":"UNSUPPRESS"}"#),
            Err(PrivacyRejection::NotJson)
        );
        assert_eq!(
            json(r#"{"type":"SUPPRESS","requestedAt":"yesterday"}"#),
            Err(PrivacyRejection::BadRequestedAt)
        );
        assert_eq!(
            read_request(None, Encoding::Json, 7),
            Ok(PrivacyUpdate::Remove)
        );
    }

    #[test]
    fn protobuf_requests_read_like_json_ones() {
        let bytes = proto::PrivacyRequest {
            r#type: proto::PrivacyRequestType::SuppressWithDelete as i32,
            requested_at_ms: Some(5),
            deleted_at_ms: None,
        }
        .encode_to_vec();
        assert_eq!(
            read_request(Some(&bytes), Encoding::Protobuf, 7),
            Ok(PrivacyUpdate::Request {
                kind: RequestType::SuppressWithDelete,
                requested_at_ms: 5,
                deleted: false,
            })
        );
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let done = encode_done(RequestType::DeleteOnly, 5, 9, encoding);
            assert_eq!(
                read_request(Some(&done), encoding, 7),
                Ok(PrivacyUpdate::Request {
                    kind: RequestType::DeleteOnly,
                    requested_at_ms: 5,
                    deleted: true,
                })
            );
        }
        let unspecified = proto::PrivacyRequest::default().encode_to_vec();
        assert_eq!(
            read_request(Some(&unspecified), Encoding::Protobuf, 7),
            Err(PrivacyRejection::UnknownType)
        );
        assert_eq!(
            read_request(Some(b"\xff\xff"), Encoding::Protobuf, 7),
            Err(PrivacyRejection::NotProtobuf)
        );
    }
}
