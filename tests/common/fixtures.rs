//! Event and consent payloads, timestamps, and what tests pick out of records read back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::records::Record;

/// A Segment-style track event for a user, without a `timestamp` (so its time is the
/// record's Kafka timestamp: when it was written).
pub fn track(user_id: &str, message_id: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Clicked","userId":"{user_id}","messageId":"{message_id}","properties":{{"n":1}}}}"#
    )
}

/// A track event that happened at `timestamp` (RFC 3339).
pub fn track_at(user_id: &str, message_id: &str, timestamp: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Clicked","userId":"{user_id}","messageId":"{message_id}","timestamp":"{timestamp}","properties":{{"n":1}}}}"#
    )
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Waits for the wall clock's next millisecond, so the next write's timestamps are later than
/// every timestamp of the writes before.
pub fn next_millisecond() {
    let start = now_ms();
    while now_ms() <= start {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A consent record for each of `user-0` .. `user-{users - 1}`, set a minute ago: analytics
/// granted where `granted(user)`, denied otherwise.
pub fn analytics_consents(users: usize, granted: impl Fn(usize) -> bool) -> Vec<Record> {
    (0..users)
        .map(|u| {
            let (given, denied): (&[&str], &[&str]) = if granted(u) {
                (&["analytics"], &[])
            } else {
                (&[], &["analytics"])
            };
            Record::new(
                &format!("user-{u}"),
                &consent(given, denied, &rfc3339_from_now(-60_000)),
            )
        })
        .collect()
}

/// Track events `e{i}` for each `i` in `range`, of user `user-{i % users}`, keyed by user.
pub fn track_events(range: std::ops::Range<usize>, users: usize) -> Vec<Record> {
    range
        .map(|i| {
            let user = format!("user-{}", i % users);
            Record::new(&user, &track(&user, &format!("e{i}")))
        })
        .collect()
}

/// RFC 3339 for now plus `offset_ms` (negative: in the past).
pub fn rfc3339_from_now(offset_ms: i64) -> String {
    rfc3339_at(now_ms() + offset_ms)
}

/// Unix milliseconds as RFC 3339, for times that must be exactly equal.
pub fn rfc3339_at(ms: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A consent value granting exactly the given categories (others listed as false).
pub fn consent(granted: &[&str], denied: &[&str], updated_at: &str) -> String {
    let mut preferences: Vec<String> = granted.iter().map(|c| format!("\"{c}\":true")).collect();
    preferences.extend(denied.iter().map(|c| format!("\"{c}\":false")));
    format!(
        r#"{{"categoryPreferences":{{{}}},"updatedAt":"{updated_at}"}}"#,
        preferences.join(",")
    )
}

/// The `messageId`s of records, in order.
pub fn message_ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(r.value.as_deref().unwrap_or_default())
                .ok()
                .and_then(|v| {
                    v.get("messageId")
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_default()
        })
        .collect()
}
