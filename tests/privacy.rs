//! Privacy requests (`[privacy] topic`), end to end: a suppressed user's events reach no
//! destination, strictly necessary ones included, by `userId` or `anonymousId`; requests are
//! read to the end at start-up, followed while running, covered by the freshness guarantee,
//! and survive restarts; a request not understood fails closed and is counted.

mod common;

use common::*;

fn destinations() -> Vec<Destination> {
    vec![
        Destination::new("amplitude", &["analytics"]),
        Destination::new("warehouse", &[]),
    ]
}

/// A scenario with a privacy topic.
fn scenario(name: &str) -> (Scenario, String) {
    let mut s = Scenario::new(name, destinations());
    let privacy = format!("{}.privacy", s.consent);
    create_topic(&privacy, 2, true);
    s.extra = format!("[privacy]\ntopic = \"{privacy}\"\n");
    (s, privacy)
}

fn request(kind: &str, at: &str) -> String {
    format!(r#"{{"type":"{kind}","requestedAt":"{at}"}}"#)
}

fn suppressed(enforcer: &Enforcer, destination: &str) -> f64 {
    enforcer.metric(&format!(
        r#"consent_enforcer_events_dropped_total{{destination="{destination}",reason="suppressed"}}"#
    ))
}

#[test]
fn a_suppressed_user_reaches_no_destination_by_either_identifier_and_across_restarts() {
    let (s, privacy) = scenario("suppressed");
    let granted = consent(&["analytics"], &[], "2026-11-22T10:00:00Z");
    for user in ["u1", "u2", "anon-2", "u3"] {
        s.send_consent(user, &granted);
    }
    produce_one(&privacy, "u1", &request("SUPPRESS", "2026-11-22T11:00:00Z"));
    produce_one(
        &privacy,
        "anon-2",
        &request("SUPPRESS_WITH_DELETE", "2026-11-22T11:00:00Z"),
    );
    let enforcer = s.start_ready();
    let with_anonymous =
        r#"{"type":"track","userId":"u2","anonymousId":"anon-2","messageId":"m2"}"#;
    s.send_events(&[
        ("u1", &track("u1", "m1")),
        ("u2", with_anonymous),
        ("u3", &track("u3", "m3")),
    ]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m3"]);
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m3"]);
    assert_eq!(suppressed(&enforcer, "warehouse"), 2.0);
    assert_eq!(suppressed(&enforcer, "amplitude"), 2.0);
    assert_eq!(enforcer.metric("consent_enforcer_suppressed_users"), 2.0);
    drop(enforcer);

    // After a restart the requests are read again before anything is judged.
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m4"))]);
    s.wait_processed_by(&enforcer);
    assert!(!message_ids(&s.delivered("warehouse")).contains(&"m4".to_owned()));
    assert_eq!(suppressed(&enforcer, "warehouse"), 1.0);
}

#[test]
fn a_request_written_before_an_event_is_applied_before_it_is_judged_and_can_be_lifted() {
    let (s, privacy) = scenario("suppress-live");
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "before"))]);
    s.wait_processed();
    // Acknowledged before the event is written: the event is judged with it.
    produce_one(&privacy, "u1", &request("SUPPRESS", &rfc3339_from_now(0)));
    s.send_events(&[("u1", &track("u1", "during"))]);
    s.wait_processed();
    next_millisecond();
    produce_one(&privacy, "u1", &request("UNSUPPRESS", &rfc3339_from_now(0)));
    next_millisecond();
    s.send_events(&[("u1", &track("u1", "after"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("warehouse")), ["before", "after"]);
    assert_eq!(message_ids(&s.delivered("amplitude")), ["before", "after"]);
    assert_eq!(suppressed(&enforcer, "warehouse"), 1.0);
}

#[test]
fn a_request_not_understood_is_counted_and_fails_closed() {
    let (s, privacy) = scenario("privacy-rejected");
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    produce_one(
        &privacy,
        "u1",
        r#"{"type":"FORGET_ME","requestedAt":"2026-11-22T11:00:00Z"}"#,
    );
    // Under the default `format = "auto"`: JSON by its `{`, else protobuf.
    produce_one(&privacy, "u2", "{not json");
    produce_one(&privacy, "u4", "not protobuf either");
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1")), ("u3", &track("u3", "m3"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m3"]);
    assert_eq!(
        enforcer
            .metric(r#"consent_enforcer_privacy_requests_rejected_total{reason="unknown_type"}"#),
        1.0
    );
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_privacy_requests_rejected_total{reason="not_json"}"#),
        1.0
    );
    assert_eq!(
        enforcer
            .metric(r#"consent_enforcer_privacy_requests_rejected_total{reason="not_protobuf"}"#),
        1.0
    );
    // The service keeps running: a valid request replaces the one not understood.
    produce_one(&privacy, "u1", &request("UNSUPPRESS", &rfc3339_from_now(0)));
    next_millisecond();
    s.send_events(&[("u1", &track("u1", "m4"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m3", "m4"]);
}

/// Reads `topic` until `count` records are there, or the wait is over.
fn wait_for_records(topic: &str, count: usize) -> Vec<Record> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let records = read_all(topic);
        if records.len() >= count || std::time::Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_delete_request_writes_one_deletion_record_per_destination_and_a_consent_tombstone_once() {
    let mut s = Scenario::new("deletion", destinations());
    let privacy = format!("{}.privacy", s.consent);
    let deletions = format!("{}.deletions", s.consent);
    create_topic(&privacy, 1, true);
    create_topic(&deletions, 1, false);
    s.destinations[0].deletion_topic = Some(deletions.clone());
    s.extra = format!("[privacy]\ntopic = \"{privacy}\"\n");
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    s.send_consent("u2", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    produce_one(
        &privacy,
        "u1",
        &request("SUPPRESS_WITH_DELETE", "2026-11-22T11:00:00Z"),
    );
    produce_one(
        &privacy,
        "u2",
        &request("DELETE_ONLY", "2026-11-22T11:00:00Z"),
    );
    let enforcer = s.start_ready();
    let written = wait_for_records(&deletions, 2);
    let mut users: Vec<String> = written.iter().map(Record::key_str).collect();
    users.sort();
    assert_eq!(users, ["u1", "u2"], "{}", enforcer.logs());
    let record: serde_json::Value =
        serde_json::from_slice(written[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(record["type"], "DELETE");
    assert_eq!(record["destination"], "amplitude");
    assert_eq!(record["requestedAt"], "2026-11-22T11:00:00Z");
    // The consent states are tombstoned, and the requests written back marked done.
    let consent = wait_for_records(&s.consent, 4);
    let tombstoned: Vec<String> = consent
        .iter()
        .filter(|r| r.value.is_none())
        .map(Record::key_str)
        .collect();
    assert_eq!(tombstoned.len(), 2, "{consent:?}");
    let marked = wait_for_records(&privacy, 4);
    assert!(
        marked
            .iter()
            .skip(2)
            .all(|r| r.value_str().contains("deletedAt")),
        "{marked:?}"
    );
    assert_eq!(
        enforcer.metric("consent_enforcer_privacy_deletions_total"),
        2.0
    );
    // u1 is suppressed; u2 (DELETE_ONLY) is not, but has no consent any more.
    s.send_events(&[("u1", &track("u1", "m1")), ("u2", &track("u2", "m2"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m2"]);
    assert!(s.delivered("amplitude").is_empty());
    drop(enforcer);

    // A restart does not delete again: the requests are marked done.
    let enforcer = s.start_ready();
    s.send_events(&[("u3", &track("u3", "m3"))]);
    s.wait_processed_by(&enforcer);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(read_all(&deletions).len(), 2);
    assert_eq!(
        enforcer.metric("consent_enforcer_privacy_deletions_total"),
        0.0
    );
}

#[test]
fn an_identifier_too_long_for_a_consent_state_is_still_suppressed() {
    let (s, privacy) = scenario("suppress-long");
    let long = "u".repeat(600);
    produce_one(
        &privacy,
        &long,
        &request("SUPPRESS", "2026-11-22T11:00:00Z"),
    );
    let enforcer = s.start_ready();
    let event = format!(r#"{{"type":"track","userId":"{long}","messageId":"m1"}}"#);
    s.send_events(&[("k", &event), ("u3", &track("u3", "m3"))]);
    s.wait_processed();
    // Strictly necessary destinations too.
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m3"]);
    assert_eq!(suppressed(&enforcer, "warehouse"), 1.0);
}

#[test]
fn a_held_event_is_judged_after_the_privacy_requests_written_before_its_users_choice() {
    let (mut s, privacy) = scenario("suppress-held");
    let hold = format!("{}.hold", s.group);
    create_topic(&hold, 2, false);
    s.extra.push_str(&format!(
        "[hold]\nenabled = true\ntopic = \"{hold}\"\nmax_age = \"10m\"\n"
    ));
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1")), ("u2", &track("u2", "m2"))]);
    enforcer.wait_metric("consent_enforcer_held_events", 2.0);
    // Acknowledged before the choice is written: a released event is judged with it.
    produce_one(&privacy, "u1", &request("SUPPRESS", &rfc3339_from_now(0)));
    let granted = consent(&["analytics"], &[], &rfc3339_from_now(0));
    s.send_consent("u1", &granted);
    s.send_consent("u2", &granted);
    enforcer.wait_metric("consent_enforcer_held_events_released_total", 2.0);
    wait_committed(&s.group, &hold);
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m2"]);
    assert_eq!(suppressed(&enforcer, "amplitude"), 1.0);
}
