//! The consent audit log (`[audit] topic`), end to end: every change the enforcer applies to
//! its consent and privacy view (read from the topics, learned from events, failed closed) is
//! written once, with the view before and after and its source; a restart does not write the
//! changes already written again, and in exactly-once mode a killed instance writes none twice.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A scenario with a privacy topic, an audit topic and learning from events.
fn scenario(name: &str) -> (Scenario, String, String) {
    let mut s = Scenario::new(
        name,
        vec![
            Destination::new("amplitude", &["analytics"]),
            Destination::new("warehouse", &[]),
        ],
    );
    let privacy = format!("{}.privacy", s.consent);
    let audit = format!("{}.audit", s.consent);
    create_topic(&privacy, 1, true);
    create_topic(&audit, 2, false);
    s.consent_extra = "learn_from_events = true".to_owned();
    s.extra = format!(
        "[privacy]\ntopic = \"{privacy}\"\n[audit]\ntopic = \"{audit}\"\ninstance = \"enforcer-a\"\n"
    );
    (s, privacy, audit)
}

/// The audit topic's records as JSON, once there are `count` (or after a wait).
fn audit_records(topic: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = read_all(topic);
        if records.len() >= count || Instant::now() > deadline {
            let mut values: Vec<Value> = records
                .iter()
                .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
                .collect();
            values.sort_by_key(|v| v["appliedAt"].as_str().map(str::to_owned));
            return values;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn of_user<'a>(records: &'a [Value], user: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["user"] == user).collect()
}

fn preference_event(user: &str, id: &str, timestamp: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Segment Consent Preference Updated","userId":"{user}","messageId":"{id}","timestamp":"{timestamp}","context":{{"consent":{{"categoryPreferences":{{"analytics":true}}}}}}}}"#
    )
}

#[test]
fn every_change_applied_is_audited_once_with_its_source_across_restarts() {
    let (s, privacy, audit) = scenario("audit");
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    produce_one(
        &privacy,
        "u2",
        r#"{"type":"SUPPRESS","requestedAt":"2026-11-22T11:00:00Z"}"#,
    );
    let mut enforcer = s.start_ready();
    // Loading is applying: the states read at start are audited the first time.
    let records = audit_records(&audit, 2);
    assert_eq!(records.len(), 2, "{}", enforcer.logs());
    let u1 = of_user(&records, "u1");
    assert_eq!(u1.len(), 1, "{records:?}");
    assert_eq!(u1[0]["view"], "consent");
    assert_eq!(u1[0]["before"], Value::Null);
    assert_eq!(u1[0]["after"]["categoryPreferences"]["analytics"], true);
    assert_eq!(u1[0]["source"]["topic"], s.consent.as_str());
    assert_eq!(u1[0]["source"]["offset"], 0);
    assert_eq!(u1[0]["instance"], "enforcer-a");
    let u2 = of_user(&records, "u2");
    assert_eq!(u2[0]["view"], "privacy");
    assert_eq!(
        u2[0]["before"],
        serde_json::json!({"suppressed": false, "failedClosed": false, "request": null})
    );
    assert_eq!(u2[0]["after"]["suppressed"], true);
    assert_eq!(u2[0]["after"]["request"]["type"], "SUPPRESS");
    assert_eq!(u2[0]["source"]["topic"], privacy.as_str());

    // Learned from an event: the source names the event.
    s.send_events(&[("u3", &preference_event("u3", "p-1", &rfc3339_from_now(0)))]);
    s.wait_processed();
    // A revocation read from the topic.
    next_millisecond();
    s.send_consent("u1", &consent(&[], &["analytics"], &rfc3339_from_now(0)));
    let records = audit_records(&audit, 4);
    assert_eq!(records.len(), 4, "{records:?}\n{}", enforcer.logs());
    let u3 = of_user(&records, "u3");
    assert_eq!(u3.len(), 1, "{records:?}");
    assert_eq!(u3[0]["source"]["learned"], true);
    assert_eq!(u3[0]["source"]["messageId"], "p-1");
    assert_eq!(u3[0]["after"]["categoryPreferences"]["analytics"], true);
    let u1 = of_user(&records, "u1");
    assert_eq!(u1.len(), 2);
    assert_eq!(u1[1]["before"]["categoryPreferences"]["analytics"], true);
    assert_eq!(u1[1]["after"]["categoryPreferences"]["analytics"], false);
    assert_eq!(
        enforcer.metric("consent_enforcer_audit_records_written_total"),
        4.0
    );
    enforcer.signal("TERM");
    assert!(enforcer.wait_exit(Duration::from_secs(30)).success());

    // After a restart the topics are read again, and only what changed since is audited.
    let enforcer = s.start_ready();
    s.send_consent("u4", "{not json");
    audit_records(&audit, 5);
    std::thread::sleep(Duration::from_secs(1));
    let records_after = audit_records(&audit, 5);
    assert_eq!(
        records_after.len(),
        5,
        "{records_after:?}\n{}",
        enforcer.logs()
    );
    let u4 = of_user(&records_after, "u4");
    assert_eq!(u4.len(), 1, "{records_after:?}");
    assert_eq!(u4[0]["rejected"], "not_json");
    assert_eq!(u4[0]["after"]["categoryPreferences"], Value::Null);
    assert_eq!(
        enforcer.metric("consent_enforcer_audit_records_written_total"),
        1.0
    );
}

#[test]
fn exactly_once_a_killed_instance_audits_no_change_twice() {
    let (mut s, privacy, audit) = scenario("audit-eos");
    s.delivery_extra = format!(
        "guarantee = \"exactly_once\"\ntransactional_id = \"{}-a\"",
        s.group
    );
    let users = 200;
    for user in 0..users {
        s.send_consent(
            &format!("u{user}"),
            &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"),
        );
    }
    let mut enforcer = s.start_ready();
    let records = audit_records(&audit, users);
    assert_eq!(records.len(), users, "{}", enforcer.logs());
    // Changes keep arriving while the instance is killed.
    for user in 0..users {
        s.send_consent(
            &format!("u{user}"),
            &consent(&[], &["analytics"], "2026-11-22T12:00:00Z"),
        );
    }
    produce_one(
        &privacy,
        "u0",
        r#"{"type":"SUPPRESS","requestedAt":"2026-11-22T11:00:00Z"}"#,
    );
    enforcer.kill9();
    let enforcer = s.start_ready();
    let expected = 2 * users + 1;
    audit_records(&audit, expected);
    std::thread::sleep(Duration::from_secs(1));
    let records = audit_records(&audit, expected);
    let mut sources: Vec<(String, i64, i64)> = records
        .iter()
        .map(|r| {
            (
                r["source"]["topic"].as_str().unwrap().to_owned(),
                r["source"]["partition"].as_i64().unwrap(),
                r["source"]["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    sources.sort();
    let before = sources.len();
    sources.dedup();
    assert_eq!(before, sources.len(), "a change was audited twice");
    assert_eq!(records.len(), expected, "{}", enforcer.logs());
}
