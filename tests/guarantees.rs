//! The guarantees in time: fresh consent for every event, revocations that win, no
//! pre-consent leak, and failing closed when the consent topic cannot be read.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;

fn amplitude() -> Vec<Destination> {
    vec![Destination::new("amplitude", &["analytics"])]
}

fn grant_now() -> String {
    consent(&["analytics"], &[], &rfc3339_from_now(0))
}

fn revoke_now() -> String {
    consent(&[], &["analytics"], &rfc3339_from_now(0))
}

/// Each user: granted at start; then, with no pause for the enforcer, a revocation, an event
/// (must be dropped: the revocation was acknowledged before it was written), a grant, an event
/// (must be delivered). Users are interleaved so consent and events race in both topics.
#[test]
fn freshness_event_written_after_an_acknowledged_update_is_judged_with_it() {
    check_freshness(Scenario::new("freshness", amplitude()));
}

/// With a wait bound this short nearly every catch-up runs out of time and is resumed on the
/// next turn: a sample taken before a batch was read must never be reused to judge it.
#[test]
fn freshness_holds_when_catching_up_keeps_running_out_of_time() {
    let mut s = Scenario::new("freshness-tight", amplitude());
    s.consent_extra = "max_wait_ms = 1".to_owned();
    check_freshness(s);
}

fn check_freshness(s: Scenario) {
    let users: Vec<String> = (0..150).map(|u| format!("user-{u}")).collect();
    for user in &users {
        s.send_consent(
            user,
            &consent(&["analytics"], &[], &rfc3339_from_now(-60_000)),
        );
    }
    let _enforcer = s.start_ready();
    for round in 0..2 {
        for user in &users {
            // Each write in a later millisecond: event time can only order what the
            // timestamps show (a tie fails closed).
            if round == 0 {
                s.send_consent(user, &revoke_now());
                next_millisecond();
                s.send_events(&[(user, &track(user, &format!("{user}-after-revoke")))]);
            } else {
                s.send_consent(user, &grant_now());
                next_millisecond();
                s.send_events(&[(user, &track(user, &format!("{user}-after-grant")))]);
            }
        }
    }
    s.wait_processed();
    let delivered: HashSet<String> = message_ids(&s.delivered("amplitude")).into_iter().collect();
    let leaked: Vec<&String> = delivered
        .iter()
        .filter(|id| id.ends_with("after-revoke"))
        .collect();
    assert!(
        leaked.is_empty(),
        "judged with consent older than acknowledged: {leaked:?}"
    );
    let lost: Vec<String> = users
        .iter()
        .map(|u| format!("{u}-after-grant"))
        .filter(|id| !delivered.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "granted before written, yet dropped: {lost:?}"
    );
}

#[test]
fn revocation_wins_nothing_of_the_user_lands_after_it_is_applied() {
    check_revocation_wins(Scenario::new("revocation-wins", amplitude()));
}

#[test]
fn exactly_once_revocation_wins_nothing_of_the_user_is_committed_after_it_is_applied() {
    let mut s = Scenario::new("revocation-wins-eos", amplitude());
    s.delivery_extra = format!(
        "guarantee = \"exactly_once\"\ntransactional_id = \"{}-tx\"",
        s.group
    );
    check_revocation_wins(s);
}

fn check_revocation_wins(s: Scenario) {
    let grant = consent(&["analytics"], &[], &rfc3339_from_now(-60_000));
    check_revocation(s, Some(grant), "u1", revoke_now(), |i| {
        track("u1", &format!("e{i}"))
    });
}

/// A revocation of the person, not of the key: `key`'s record narrows a person whose events
/// carry both `u1` and `a1`.
fn check_person_revocation(s: Scenario, key: &'static str, before: Option<String>) {
    // Wider for this key than nothing, narrower for the person.
    let revocation = consent(&["advertising"], &["analytics"], &rfc3339_from_now(0));
    check_revocation(s, before, key, revocation, |i| {
        format!(r#"{{"type":"track","userId":"u1","anonymousId":"a1","messageId":"e{i}"}}"#)
    });
}

/// With u1 granted analytics by `before`, streams events made by `event` while `revocation`
/// is written for `key`: nothing may land after the enforcer applied it.
fn check_revocation(
    s: Scenario,
    before: Option<String>,
    key: &str,
    revocation: String,
    event: fn(usize) -> String,
) {
    if let Some(grant) = before {
        s.send_consent("u1", &grant);
    }
    // The broker stamps each delivered record with its append time, and the enforcer logs
    // (at debug) when it applies a record that may narrow a grant.
    set_topic_configs(
        s.topic("amplitude"),
        &[("message.timestamp.type", "LogAppendTime")],
    );
    std::env::set_var(
        "ENFORCER_LOG",
        "info,consent_enforcer::consent::follower=debug",
    );
    let enforcer = s.start_ready();
    // A steady stream of the user's events, in flight while the revocation arrives.
    let stream = {
        let input = s.input.clone();
        std::thread::spawn(move || {
            for i in 0..400 {
                produce(&input, &[Record::new("u1", &event(i))]);
            }
        })
    };
    enforcer.wait_metric(
        r#"consent_enforcer_events_delivered_total{destination="amplitude"}"#,
        20.0,
    );
    let applied_before = enforcer.metric("consent_enforcer_consent_records_applied_total");
    s.send_consent(key, &revocation);
    enforcer.wait_metric(
        "consent_enforcer_consent_records_applied_total",
        applied_before + 1.0,
    );
    // Everything delivered so far was acknowledged (or committed, for a read_committed
    // reader) before the revocation was applied.
    let at_revocation = s.delivered("amplitude").len();
    stream.join().unwrap();
    s.wait_processed();
    let after = s.delivered("amplitude").len();
    assert_eq!(
        after, at_revocation,
        "events of the person landed after the revocation"
    );
    // Nor between its application and the count above: no delivered record was appended
    // after the enforcer applied it.
    let logs = enforcer.logs();
    let applied_line = logs
        .lines()
        .rfind(|l| l.contains("applying a consent record that may narrow a grant"))
        .expect("the application is logged");
    let applied_at = time::OffsetDateTime::parse(
        applied_line.split_whitespace().next().expect("a timestamp"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("an RFC 3339 timestamp");
    let applied_ms = i64::try_from(applied_at.unix_timestamp_nanos() / 1_000_000).unwrap();
    for record in s.delivered("amplitude") {
        let appended = record.timestamp.expect("append time");
        assert!(
            appended <= applied_ms,
            "a record appended at {appended} ms, after the revocation was applied at {applied_ms} ms"
        );
    }
    assert!(
        enforcer.metric(
            r#"consent_enforcer_events_dropped_total{destination="amplitude",reason="denied"}"#
        ) > 0.0
    );
}

#[test]
fn a_newer_anonymous_state_that_narrows_the_person_is_a_revocation() {
    let s = Scenario::new("revocation-person", amplitude());
    check_person_revocation(
        s,
        "a1",
        Some(consent(&["analytics"], &[], &rfc3339_from_now(-60_000))),
    );
}

#[test]
fn a_first_state_under_when_missing_allow_is_a_revocation() {
    let mut s = Scenario::new("revocation-first", amplitude());
    s.consent_extra = "when_missing = \"allow\"".to_owned();
    check_person_revocation(s, "u1", None);
}

#[test]
fn pre_consent_event_is_not_delivered_by_a_later_grant() {
    let s = Scenario::new("pre-consent", amplitude());
    let _enforcer = s.start_ready();
    // The event happened a minute ago; the user said yes 30 s ago; the event arrives now.
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-30_000)),
    );
    s.send_events(&[
        (
            "u1",
            &track_at("u1", "before-choice", &rfc3339_from_now(-60_000)),
        ),
        (
            "u1",
            &track_at("u1", "after-choice", &rfc3339_from_now(-10_000)),
        ),
    ]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["after-choice"]);
}

#[test]
fn late_event_is_judged_by_the_consent_in_force_at_its_time() {
    let s = Scenario::new("history", amplitude());
    // Granted 3 minutes ago, revoked 2 minutes ago, granted again 1 minute ago.
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-180_000)),
    );
    s.send_consent(
        "u1",
        &consent(&[], &["analytics"], &rfc3339_from_now(-120_000)),
    );
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-60_000)),
    );
    let _enforcer = s.start_ready();
    s.send_events(&[
        (
            "u1",
            &track_at("u1", "while-granted", &rfc3339_from_now(-150_000)),
        ),
        (
            "u1",
            &track_at("u1", "while-revoked", &rfc3339_from_now(-90_000)),
        ),
        (
            "u1",
            &track_at("u1", "granted-again", &rfc3339_from_now(-30_000)),
        ),
    ]);
    s.wait_processed();
    assert_eq!(
        message_ids(&s.delivered("amplitude")),
        ["while-granted", "granted-again"]
    );
}

#[test]
fn consent_withdrawn_since_the_event_wins_over_consent_at_its_time() {
    let s = Scenario::new("withdrawn-since", amplitude());
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-120_000)),
    );
    s.send_consent(
        "u1",
        &consent(&[], &["analytics"], &rfc3339_from_now(-60_000)),
    );
    let _enforcer = s.start_ready();
    s.send_events(&[("u1", &track_at("u1", "old", &rfc3339_from_now(-90_000)))]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
}

#[test]
fn client_clock_ahead_cannot_date_an_event_after_a_later_grant() {
    let s = Scenario::new("clock-ahead", amplitude());
    // Written before the user's choice, but its timestamp claims an hour from now.
    s.send_events(&[(
        "u1",
        &track_at("u1", "future", &rfc3339_from_now(3_600_000)),
    )]);
    std::thread::sleep(Duration::from_millis(50));
    s.send_consent("u1", &grant_now());
    // Judged after the grant is applied: its time is capped at its record time, before the grant.
    let _enforcer = s.start_ready();
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
}

#[test]
fn unreadable_consent_topic_stops_judging_and_reports_not_ready_then_recovers() {
    let mut s = Scenario::new("stale", vec![Destination::new("warehouse", &[])]);
    s.consent_extra = "max_wait_ms = 200\nmax_staleness_ms = 1500".to_owned();
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "before"))]);
    s.wait_processed();
    delete_topic(&s.consent);
    let deadline = Instant::now() + WAIT;
    while enforcer.get("/readyz").map(|r| r.0) != Some(503) {
        assert!(
            Instant::now() < deadline,
            "never reported not ready:\n{}",
            enforcer.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.send_events(&[("u1", &track("u1", "while-stale"))]);
    std::thread::sleep(Duration::from_secs(3));
    // Even a strictly-necessary destination gets nothing while the table cannot be trusted.
    assert_eq!(message_ids(&s.delivered("warehouse")), ["before"]);
    assert_eq!(enforcer.get("/healthz").map(|r| r.0), Some(200));

    create_topic(&s.consent, 1, true);
    enforcer.wait_ready();
    s.wait_processed();
    assert_eq!(
        message_ids(&s.delivered("warehouse")),
        ["before", "while-stale"]
    );
}

/// An event of both identifiers, at `timestamp`.
fn track_of_person(user_id: &str, anonymous_id: &str, message_id: &str, timestamp: &str) -> String {
    format!(
        r#"{{"type":"track","userId":"{user_id}","anonymousId":"{anonymous_id}","messageId":"{message_id}","timestamp":"{timestamp}"}}"#
    )
}

#[test]
fn a_re_sent_choice_keeps_the_user_state_winning_the_tie_for_a_late_event() {
    let s = Scenario::new("re-sent-choice", amplitude());
    let t0 = now_ms() - 300_000;
    let at = |offset: i64| rfc3339_at(t0 + offset);
    s.send_consent("u1", &consent(&["advertising"], &["analytics"], &at(0)));
    s.send_consent(
        "u1",
        &consent(&["advertising"], &["analytics"], &at(60_000)),
    );
    s.send_consent("a1", &consent(&["analytics"], &[], &at(60_000)));
    s.send_consent("u1", &consent(&["analytics"], &[], &at(120_000)));
    let enforcer = s.start_ready();
    // Between the re-sent choice and the later change, the user state (which wins the tie)
    // denied analytics; after the change it granted it.
    s.send_events(&[
        ("u1", &track_of_person("u1", "a1", "between", &at(90_000))),
        ("u1", &track_of_person("u1", "a1", "after", &at(150_000))),
    ]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["after"]);
    assert_eq!(
        enforcer.metric(
            r#"consent_enforcer_events_dropped_total{destination="amplitude",reason="denied"}"#
        ),
        1.0
    );
}

#[test]
fn a_malformed_consent_record_never_widens_what_the_person_receives() {
    let s = Scenario::new("malformed-widens", amplitude());
    s.send_consent(
        "a1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-60_000)),
    );
    s.send_consent(
        "u1",
        &consent(&[], &["analytics"], &rfc3339_from_now(-30_000)),
    );
    let _enforcer = s.start_ready();
    let now = || rfc3339_from_now(0);
    s.send_events(&[("u1", &track_of_person("u1", "a1", "before", &now()))]);
    s.wait_processed();
    // A malformed record for the user whose Kafka timestamp is older than the anonymous
    // grant: the person was denied analytics before it, and must stay denied.
    let mut malformed = Record::new("u1", "{not json");
    malformed.timestamp = Some(now_ms() - 100_000);
    produce(&s.consent, &[malformed]);
    next_millisecond();
    s.send_events(&[("u1", &track_of_person("u1", "a1", "after", &now()))]);
    s.wait_processed();
    assert!(
        s.delivered("amplitude").is_empty(),
        "{:?}",
        message_ids(&s.delivered("amplitude"))
    );
}

#[test]
fn a_late_event_from_before_the_history_kept_is_no_consent_even_under_when_missing_allow() {
    let mut s = Scenario::new("unknown-history", amplitude());
    s.consent_extra = "when_missing = \"allow\"\nhistory_max_changes = 1".to_owned();
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-300_000)),
    );
    s.send_consent(
        "u1",
        &consent(&[], &["analytics"], &rfc3339_from_now(-200_000)),
    );
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-100_000)),
    );
    let enforcer = s.start_ready();
    // The state in force at -250 s was evicted (one change kept): unknown, not "no state".
    s.send_events(&[
        (
            "u1",
            &track_at("u1", "evicted", &rfc3339_from_now(-250_000)),
        ),
        ("u1", &track_at("u1", "kept", &rfc3339_from_now(-50_000))),
    ]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["kept"]);
    assert_eq!(
        enforcer.metric(
            r#"consent_enforcer_events_dropped_total{destination="amplitude",reason="no_consent"}"#
        ),
        1.0
    );
}

#[test]
fn a_revocation_behind_a_transaction_left_open_on_the_consent_topic_fails_closed() {
    use rdkafka::producer::Producer;

    let mut s = Scenario::new("hidden-revocation", amplitude());
    s.consent_extra = "max_staleness_ms = 2000\nmax_wait_ms = 500".to_owned();
    s.send_consent("u1", &grant_now());
    let enforcer = s.start_ready();
    // Another writer of the consent topic opens a transaction there and leaves it open:
    // everything written after it sits above the last stable offset, invisible.
    let writer = leave_a_transaction_open(&s.consent, &format!("{}-cmp", s.group));
    s.send_consent("u1", &revoke_now());
    let deadline = Instant::now() + Duration::from_secs(30);
    while enforcer.get("/readyz").map(|r| r.0) != Some(503) {
        assert!(
            Instant::now() < deadline,
            "still ready; log:\n{}",
            enforcer.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    s.send_events(&[("u1", &track("u1", "m1"))]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(s.delivered("amplitude").is_empty());
    // Once the transaction ends, the revocation is read and judges the event.
    writer.abort_transaction(WAIT).expect("abort_transaction");
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
    assert_eq!(enforcer.get("/readyz").map(|r| r.0), Some(200));
}

#[test]
fn start_up_waits_for_a_transaction_left_open_on_the_consent_topic() {
    use rdkafka::producer::Producer;

    let s = Scenario::new("hidden-at-start", amplitude());
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-60_000)),
    );
    let writer = leave_a_transaction_open(&s.consent, &format!("{}-cmp", s.group));
    // Acknowledged before the enforcer starts, but above the last stable offset.
    s.send_consent("u1", &revoke_now());
    let enforcer = s.start();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    std::thread::sleep(Duration::from_secs(5));
    assert_ne!(
        enforcer.get("/readyz").map(|r| r.0),
        Some(200),
        "ready with the consent topic not read to its end; log:\n{}",
        enforcer.logs()
    );
    writer.abort_transaction(WAIT).expect("abort_transaction");
    enforcer.wait_ready();
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
}
