//! The consent topic: loaded before the first event, followed while running, and every kind
//! of record (tombstone, malformed, stale) handled as documented.

mod common;

use std::time::Duration;

use common::*;

fn amplitude() -> Vec<Destination> {
    vec![Destination::new("amplitude", &["analytics"])]
}

/// Waits until the enforcer has read `n` consent records.
fn wait_consent_records(enforcer: &Enforcer, n: f64) {
    enforcer.wait_metric("consent_enforcer_consent_records_received_total", n);
}

#[test]
fn states_written_before_start_are_honoured_for_the_first_event() {
    let s = Scenario::new("bootstrap", amplitude());
    // Many states, so the table is not loaded in one fetch; the event's user is the last.
    let records: Vec<Record> = (0..2_000)
        .map(|i| {
            Record::new(
                &format!("u{i}"),
                &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"),
            )
        })
        .collect();
    produce(&s.consent, &records);
    // The events are already waiting when the enforcer starts.
    s.send_events(&[
        ("u1999", &track("u1999", "m1")),
        ("nobody", &track("nobody", "m2")),
    ]);
    let enforcer = s.start_ready();
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert_eq!(enforcer.metric("consent_enforcer_consent_states"), 2_000.0);
}

#[test]
fn readyz_is_503_until_the_table_is_loaded_and_healthz_answers_throughout() {
    let s = Scenario::new("readyz", amplitude());
    // An unreachable cluster holds the enforcer before its table is loaded, for as long as
    // kafka.startup_timeout_secs allows.
    let port = free_port();
    let config = s.dir.join("unreachable.toml");
    let text = s
        .config(port)
        .replace("[kafka]\n", "[kafka]\nstartup_timeout_secs = 8\n");
    std::fs::write(&config, text).unwrap();
    let closed = format!("127.0.0.1:{}", free_port());
    let mut waiting = Enforcer::start_with_bootstrap(&config, port, &closed);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while waiting.get("/healthz").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no HTTP listener; log:\n{}",
            waiting.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(waiting.get("/healthz").map(|r| r.0), Some(200));
    assert_eq!(waiting.get("/readyz").map(|r| r.0), Some(503));
    assert_eq!(waiting.wait_exit(WAIT).code(), Some(1));

    let enforcer = s.start_ready();
    assert_eq!(enforcer.get("/healthz").map(|r| r.0), Some(200));
    assert_eq!(enforcer.get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(enforcer.metric("consent_enforcer_ready"), 1.0);
}

#[test]
fn consent_change_while_running_applies_to_later_events() {
    let s = Scenario::new("change", amplitude());
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    s.send_consent("u1", &consent(&[], &["analytics"], "2026-11-22T11:00:00Z"));
    wait_consent_records(&enforcer, 2.0);
    s.send_events(&[("u1", &track("u1", "m2"))]);
    s.wait_processed();
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T12:00:00Z"));
    wait_consent_records(&enforcer, 3.0);
    s.send_events(&[("u1", &track("u1", "m3"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1", "m3"]);
}

#[test]
fn tombstone_removes_the_state_whatever_its_time() {
    let s = Scenario::new("tombstone", amplitude());
    s.send_consent("u1", &consent(&["analytics"], &[], "2030-01-01T00:00:00Z"));
    let enforcer = s.start_ready();
    produce_tombstone(&s.consent, "u1");
    wait_consent_records(&enforcer, 2.0);
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
    assert_eq!(
        enforcer.metric(
            r#"consent_enforcer_events_dropped_total{destination="amplitude",reason="no_consent"}"#
        ),
        1.0
    );
    assert_eq!(enforcer.metric("consent_enforcer_consent_states"), 0.0);
}

#[test]
fn malformed_consent_record_is_rejected_counted_and_fails_closed() {
    let s = Scenario::new("malformed-consent", amplitude());
    let mut when_allowed = s;
    when_allowed.consent_extra = "when_missing = \"allow\"".to_owned();
    let s = when_allowed;
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    s.send_consent("u1", "{not json");
    s.send_consent(
        "u2",
        r#"{"categoryPreferences":{"analytics":true},"updatedAt":"last tuesday"}"#,
    );
    s.send_consent("u3", r#"["analytics"]"#);
    s.send_consent("u4", r#"{"updatedAt":"2026-11-22T10:00:00Z"}"#);
    let enforcer = s.start_ready();
    s.send_events(&[
        ("u1", &track("u1", "m1")),
        ("u2", &track("u2", "m2")),
        ("u3", &track("u3", "m3")),
        ("u4", &track("u4", "m4")),
    ]);
    s.wait_processed();
    // Even with when_missing = "allow", a rejected record leaves "present, nothing granted".
    assert!(s.delivered("amplitude").is_empty());
    for reason in [
        "not_json",
        "bad_updated_at",
        "not_object",
        "bad_preferences",
    ] {
        assert_eq!(
            enforcer.metric(&format!(
                r#"consent_enforcer_consent_records_rejected_total{{reason="{reason}"}}"#
            )),
            1.0,
            "{reason}"
        );
    }
    // A valid record afterwards restores delivery.
    s.send_consent("u1", &consent(&["analytics"], &[], &rfc3339_from_now(0)));
    wait_consent_records(&enforcer, 6.0);
    s.send_events(&[("u1", &track("u1", "m5"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m5"]);
}

#[test]
fn consent_record_with_non_utf8_key_is_rejected_and_service_keeps_running() {
    // (A null key cannot reach a compacted topic: the broker refuses it.)
    let s = Scenario::new("bad-key", vec![Destination::new("warehouse", &[])]);
    produce(
        &s.consent,
        &[Record {
            key: Some(vec![0xff, 0xfe]),
            value: Some(consent(&["analytics"], &[], "2026-11-22T10:00:00Z").into_bytes()),
            ..Record::default()
        }],
    );
    let enforcer = s.start_ready();
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_consent_records_rejected_total{reason="bad_key"}"#),
        1.0
    );
    assert_eq!(enforcer.metric("consent_enforcer_consent_states"), 0.0);
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m1"]);
}

#[test]
fn stale_record_is_ignored_and_newer_state_republished() {
    let s = Scenario::new("stale", amplitude());
    s.send_consent("u1", &consent(&[], &["analytics"], "2026-11-22T12:00:00Z"));
    // Written later, but older: an out-of-order grant that must not resurrect.
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T08:00:00Z"));
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_consent_records_rejected_total{reason="stale"}"#),
        1.0
    );
    enforcer.wait_metric("consent_enforcer_consent_records_republished_total", 1.0);
    let records = read_all(&s.consent);
    let last = records.last().expect("consent records");
    assert_eq!(records.len(), 3);
    assert_eq!(last.key_str(), "u1");
    assert_eq!(
        last.header("consent-enforcer-republished").as_deref(),
        Some("stale-record-superseded")
    );
    let value: serde_json::Value = serde_json::from_slice(last.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        value["categoryPreferences"]["analytics"],
        serde_json::json!(false)
    );
    assert_eq!(
        value["updatedAt"],
        serde_json::json!("2026-11-22T12:00:00Z")
    );
}

/// The override is the newer record itself, read back: the fields the enforcer does not read
/// (consent evidence a CMP wrote) and its headers survive compaction with it.
#[test]
fn the_override_of_a_stale_record_is_a_copy_of_the_newer_record_with_its_own_fields() {
    let s = Scenario::new("stale-copy", amplitude());
    let newer = r#"{"categoryPreferences":{"analytics":false,"marketing":true},"updatedAt":"2026-11-22T12:00:00Z","consentId":"c-42","source":"onetrust"}"#;
    produce(
        &s.consent,
        &[Record {
            key: Some(b"u1".to_vec()),
            value: Some(newer.as_bytes().to_vec()),
            headers: vec![("cmp".to_owned(), Some(b"onetrust".to_vec()))],
            ..Record::default()
        }],
    );
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T08:00:00Z"));
    let enforcer = s.start_ready();
    enforcer.wait_metric("consent_enforcer_consent_records_republished_total", 1.0);
    let records = read_all(&s.consent);
    assert_eq!(records.len(), 3);
    let last = &records[2];
    assert_eq!(last.key_str(), "u1");
    assert_eq!(last.value.as_deref(), Some(newer.as_bytes()));
    assert_eq!(last.header("cmp").as_deref(), Some("onetrust"));
    assert_eq!(
        last.header("consent-enforcer-republished").as_deref(),
        Some("stale-record-superseded")
    );
    assert_eq!(
        enforcer.metric("consent_enforcer_consent_records_republished_rewritten_total"),
        0.0
    );
    // Read back, the copy applies as the same state: nothing more is re-published.
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
    assert_eq!(
        enforcer.metric("consent_enforcer_consent_records_republished_total"),
        1.0
    );
}

/// A newer record without an `updatedAt` of its own is applied with its Kafka timestamp: a
/// copy written later would carry a later one. Its override is the table's state, counted.
#[test]
fn a_newer_record_without_its_own_time_is_overridden_from_the_table_and_counted() {
    let s = Scenario::new("stale-rewrite", amplitude());
    s.send_consent(
        "u1",
        r#"{"categoryPreferences":{"analytics":false},"consentId":"c-1"}"#,
    );
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T08:00:00Z"));
    let enforcer = s.start_ready();
    enforcer.wait_metric("consent_enforcer_consent_records_republished_total", 1.0);
    assert_eq!(
        enforcer.metric("consent_enforcer_consent_records_republished_rewritten_total"),
        1.0
    );
    let records = read_all(&s.consent);
    let value: serde_json::Value =
        serde_json::from_slice(records[2].value.as_deref().unwrap()).unwrap();
    assert_eq!(
        value["categoryPreferences"]["analytics"],
        serde_json::json!(false)
    );
    assert!(value.get("consentId").is_none());
}

/// Compaction can leave of a user's records only a stale one and the override written after
/// it (the newer record and the states between are gone). The stale record was never in
/// force: the time between the two is unknown, not covered by its grant.
#[test]
fn a_stale_record_and_its_override_left_by_compaction_leave_the_time_between_unknown() {
    const DAY: i64 = 86_400_000;
    let s = Scenario::new("compacted-override", amplitude());
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-500 * DAY)),
    );
    produce(
        &s.consent,
        &[Record {
            key: Some(b"u1".to_vec()),
            value: Some(consent(&["analytics"], &[], &rfc3339_from_now(-DAY)).into_bytes()),
            headers: vec![(
                "consent-enforcer-republished".to_owned(),
                Some(b"stale-record-superseded".to_vec()),
            )],
            ..Record::default()
        }],
    );
    let _enforcer = s.start_ready();
    s.send_events(&[
        ("u1", &track_at("u1", "then", &rfc3339_from_now(-200 * DAY))),
        ("u1", &track("u1", "now")),
    ]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["now"]);
}

/// The override of a user failed closed reads back as malformed; its record is stamped with
/// the time it is written (the failed-closed state's own time is the end of time, which a
/// broker refuses as too far in the future, and the service would stop on every restart).
#[test]
fn a_stale_record_of_a_user_failed_closed_is_overridden_and_the_service_keeps_running() {
    let s = Scenario::new("stale-failed", amplitude());
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T12:00:00Z"));
    s.send_consent("u1", "{broken");
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T08:00:00Z"));
    let mut enforcer = s.start_ready();
    enforcer.wait_metric("consent_enforcer_consent_records_republished_total", 1.0);
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
    assert!(enforcer.exited().is_none(), "stopped:\n{}", enforcer.logs());
    let records = read_all(&s.consent);
    let last = records.last().expect("the override");
    assert!(last.header("consent-enforcer-republished").is_some());
    let value: serde_json::Value = serde_json::from_slice(last.value.as_deref().unwrap()).unwrap();
    assert_eq!(value["categoryPreferences"], serde_json::Value::Null);
    let written = last.timestamp.expect("a timestamp");
    assert!((written - now_ms()).abs() < 600_000, "stamped {written}");
}

/// Every instance of a global-mode group reads every consent partition and sees every stale
/// record; only the owner of the matching input partition writes the override.
#[test]
fn with_two_instances_in_global_mode_each_stale_record_is_re_published_once() {
    let s = Scenario::with_topics("stale-two", amplitude(), 2, 3);
    let a = s.start_instance("a");
    a.wait_ready();
    let b = s.start_instance("b");
    b.wait_ready();
    // Until both own an input partition (each has received an event).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while [&a, &b]
        .iter()
        .any(|e| e.metric("consent_enforcer_events_received_total") < 1.0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "an instance got no partition"
        );
        for partition in 0..2 {
            produce_to_partition(&s.input, partition, "k", &track("nobody", &format!("m{n}")));
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let users = 6;
    for i in 0..users {
        let (user, partition) = (format!("u{i}"), i % 3);
        let newer = consent(&[], &["analytics"], "2026-11-22T12:00:00Z");
        let older = consent(&["analytics"], &[], "2026-11-22T08:00:00Z");
        produce_to_partition(&s.consent, partition, &user, &newer);
        produce_to_partition(&s.consent, partition, &user, &older);
    }
    let republished = || {
        a.metric("consent_enforcer_consent_records_republished_total")
            + b.metric("consent_enforcer_consent_records_republished_total")
    };
    while republished() < users as f64 {
        assert!(std::time::Instant::now() < deadline, "not re-published");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Time for a second writer to show, if there were one.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(republished(), users as f64);
    let mut overrides: Vec<(i32, String)> = read_all(&s.consent)
        .iter()
        .filter(|r| r.header("consent-enforcer-republished").is_some())
        .map(|r| (r.partition, r.key_str()))
        .collect();
    overrides.sort();
    let expected: Vec<(i32, String)> = {
        let mut e: Vec<_> = (0..users).map(|i| (i % 3, format!("u{i}"))).collect();
        e.sort();
        e
    };
    assert_eq!(overrides, expected);
}

/// In exactly-once mode the re-published state is written outside the enforcer's transaction:
/// inside one, it would hold back the consent topic's last stable offset, and with it every
/// instance's view of consent acknowledged after it, until the transaction commits.
#[test]
fn exactly_once_republish_is_visible_before_any_transaction_commits() {
    let mut s = Scenario::new("stale-eos", amplitude());
    s.delivery_extra = format!(
        "guarantee = \"exactly_once\"\ntransactional_id = \"{}-tx\"\ntransaction_interval_ms = 600000",
        s.group
    );
    s.send_consent("u1", &consent(&[], &["analytics"], "2026-11-22T12:00:00Z"));
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T08:00:00Z"));
    let enforcer = s.start_ready();
    enforcer.wait_metric("consent_enforcer_consent_records_republished_total", 1.0);
    // A consumer reading committed records only sees it, and a record written after it.
    s.send_consent("u2", &consent(&["analytics"], &[], &rfc3339_from_now(0)));
    let keys: Vec<String> = read_all(&s.consent).iter().map(|r| r.key_str()).collect();
    assert_eq!(keys, ["u1", "u1", "u1", "u2"]);
}

#[test]
fn republished_state_survives_a_restart() {
    let s = Scenario::new("stale-restart", amplitude());
    s.send_consent("u1", &consent(&[], &["analytics"], "2026-11-22T12:00:00Z"));
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T08:00:00Z"));
    {
        let enforcer = s.start_ready();
        enforcer.wait_metric("consent_enforcer_consent_records_republished_total", 1.0);
    }
    // After a restart the last record by offset is the re-published newer state; reading it
    // applies (equal time), and nothing more is re-published.
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
    assert_eq!(
        enforcer.metric("consent_enforcer_consent_records_republished_total"),
        0.0
    );
    assert_eq!(read_all(&s.consent).len(), 3);
}

#[test]
fn equal_time_record_applies() {
    let s = Scenario::new("equal", amplitude());
    s.send_consent("u1", &consent(&[], &["analytics"], "2026-11-22T12:00:00Z"));
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], "2026-11-22T12:00:00.000Z"),
    );
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_consent_records_rejected_total{reason="stale"}"#),
        0.0
    );
}

#[test]
fn missing_updated_at_takes_the_record_timestamp() {
    let s = Scenario::new("kafka-time", amplitude());
    // Kafka timestamp 2026-11-22T11:00:00Z, no updatedAt: newer than the 10:00 revocation.
    s.send_consent("u1", &consent(&[], &["analytics"], "2026-11-22T10:00:00Z"));
    produce(
        &s.consent,
        &[Record {
            timestamp: Some(1_795_345_200_000),
            ..Record::new("u1", r#"{"categoryPreferences":{"analytics":true}}"#)
        }],
    );
    let _enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
}

#[test]
fn a_revocation_written_to_a_consent_partition_added_after_start_is_applied() {
    let s = Scenario::new("added-partition", amplitude());
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-60_000)),
    );
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    add_partitions(&s.consent, 3);
    produce_to_partition(
        &s.consent,
        2,
        "u1",
        &consent(&[], &["analytics"], &rfc3339_from_now(-1_000)),
    );
    // Written after the revocation was acknowledged: judged with it, without waiting for
    // the enforcer to notice the new partition by other means.
    s.send_events(&[("u1", &track("u1", "m2"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert_eq!(
        enforcer.metric("consent_enforcer_consent_records_received_total"),
        2.0
    );
}
