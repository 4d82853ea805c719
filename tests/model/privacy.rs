//! What a privacy request says, and who is suppressed (README, "Privacy requests").

use super::json::Json;
use super::rfc3339;

/// One privacy record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A valid request: whether it suppresses (`SUPPRESS`, `SUPPRESS_WITH_DELETE`: yes;
    /// `UNSUPPRESS`: no; `DELETE_ONLY`: `None`, it leaves suppression as it is), and
    /// `requestedAt` (else the record time).
    Valid { suppresses: Option<bool>, at: i64 },
    /// A null value: the request is withdrawn.
    Withdrawn,
    /// Not understood: the README's reason label.
    Rejected(&'static str),
}

/// Reading: the README's order of checks: JSON object (a field read twice is not JSON that
/// reads one way), then `type`, then `requestedAt`.
pub fn read(value: Option<&[u8]>, record_time: i64) -> Request {
    let Some(bytes) = value else {
        return Request::Withdrawn;
    };
    let Some(json) = Json::parse(bytes).filter(Json::is_object) else {
        return Request::Rejected("not_json");
    };
    if json.count("type") > 1 || json.count("requestedAt") > 1 {
        return Request::Rejected("not_json");
    }
    let suppresses = match json.get("type") {
        Some(Json::String(t)) if t == "SUPPRESS" || t == "SUPPRESS_WITH_DELETE" => Some(true),
        Some(Json::String(t)) if t == "UNSUPPRESS" => Some(false),
        Some(Json::String(t)) if t == "DELETE_ONLY" => None,
        _ => return Request::Rejected("unknown_type"),
    };
    let at = match json.get("requestedAt") {
        None | Some(Json::Null) => record_time,
        Some(Json::String(text)) => match rfc3339::parse_ms(text) {
            Some(ms) => ms,
            None => return Request::Rejected("bad_requested_at"),
        },
        Some(_) => return Request::Rejected("bad_requested_at"),
    };
    // "Capped at the record's timestamp, as a consent state's `updatedAt` is."
    Request::Valid {
        suppresses,
        at: at.min(record_time),
    }
}

/// An identifier's requests replayed from the first: "suppressed from the request on; a
/// newer `requestedAt` wins, an older request is ignored; a request not understood
/// suppresses until a valid one not older than the last valid replaces it; `UNSUPPRESS` or a
/// tombstone lift it, `DELETE_ONLY` leaves it as it is; an event dated within the last
/// suppression lifted stays dropped".
pub fn suppressed(requests: &[(Request, i64)], event_time: i64) -> bool {
    let mut bar: Option<i64> = None;
    let mut since: Option<i64> = None;
    let mut lifted: Option<(i64, i64)> = None;
    for (request, record_time) in requests {
        let (suppresses, at) = match request {
            Request::Rejected(_) => {
                since = Some(i64::MIN);
                continue;
            }
            Request::Valid { at, .. } if bar.is_some_and(|b| b > *at) => continue,
            Request::Valid { suppresses, at } => {
                bar = Some(*at);
                (suppresses.unwrap_or(since.is_some()), *at)
            }
            Request::Withdrawn => {
                bar = None;
                (false, *record_time)
            }
        };
        match (since, suppresses) {
            (None, true) => since = Some(at),
            (Some(from), false) => {
                lifted = Some((from, at.max(from)));
                since = None;
            }
            _ => {}
        }
    }
    since.is_some() || lifted.is_some_and(|(from, to)| from <= event_time && event_time < to)
}
