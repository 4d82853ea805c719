//! The pre-consent hold: events of a user with no consent source wait for the first choice.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn scenario(name: &str, max_age: &str) -> Scenario {
    let mut s = Scenario::new(
        name,
        vec![
            Destination::new("amplitude", &["analytics"]),
            Destination::new("ads", &["advertising"]),
            Destination::new("warehouse", &[]),
        ],
    );
    let hold_topic = format!("{}.hold", s.group);
    create_topic(&hold_topic, 2, false);
    s.extra =
        format!("[hold]\nenabled = true\ntopic = \"{hold_topic}\"\nmax_age = \"{max_age}\"\n");
    s
}

fn hold_topic(s: &Scenario) -> String {
    format!("{}.hold", s.group)
}

#[test]
fn held_event_is_judged_by_the_first_choice() {
    let s = scenario("hold-release", "10m");
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    enforcer.wait_metric("consent_enforcer_held_events", 1.0);
    // The input is committed although the event waits.
    s.wait_processed();
    // Strictly necessary: delivered at once, not held.
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m1"]);
    assert!(s.delivered("amplitude").is_empty());
    assert_eq!(
        enforcer.metric(
            r#"consent_enforcer_events_dropped_total{destination="amplitude",reason="no_consent"}"#
        ),
        0.0
    );

    s.send_consent(
        "u1",
        &consent(&["analytics"], &["advertising"], &rfc3339_from_now(0)),
    );
    enforcer.wait_metric("consent_enforcer_held_events_released_total", 1.0);
    wait_committed(&s.group, &hold_topic(&s));
    let released = s.delivered("amplitude");
    assert_eq!(message_ids(&released), ["m1"]);
    assert!(s.delivered("ads").is_empty());
    // Released as it came in: no hold headers.
    assert!(released[0].headers.is_empty(), "{:?}", released[0].headers);
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m1"]);
    assert_eq!(enforcer.metric("consent_enforcer_held_events"), 0.0);
}

#[test]
fn held_event_expires_without_a_choice() {
    let s = scenario("hold-expire", "2s");
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    enforcer.wait_metric("consent_enforcer_held_events_expired_total", 1.0);
    wait_committed(&s.group, &hold_topic(&s));
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_events_dropped_total{destination="amplitude",reason="hold_expired"}"#),
        1.0
    );
    // A choice after expiry does not bring it back.
    s.send_consent(
        "u1",
        &consent(&["analytics", "advertising"], &[], &rfc3339_from_now(0)),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(s.delivered("amplitude").is_empty());
    assert!(s.delivered("ads").is_empty());
}

#[test]
fn held_events_survive_a_restart_without_loss_or_leak() {
    let s = scenario("hold-restart", "10m");
    let mut enforcer = s.start_ready();
    s.send_events(&[
        ("u1", &track("u1", "granted-later")),
        ("u2", &track("u2", "denied-later")),
    ]);
    enforcer.wait_metric("consent_enforcer_held_events", 2.0);
    enforcer.kill9();
    s.send_consent(
        "u1",
        &consent(&["analytics"], &["advertising"], &rfc3339_from_now(0)),
    );
    s.send_consent(
        "u2",
        &consent(&[], &["analytics", "advertising"], &rfc3339_from_now(0)),
    );
    let restarted = s.start_ready();
    restarted.wait_metric("consent_enforcer_held_events_released_total", 2.0);
    wait_committed(&s.group, &hold_topic(&s));
    assert_eq!(message_ids(&s.delivered("amplitude")), ["granted-later"]);
    assert!(s.delivered("ads").is_empty());
}

#[test]
fn user_with_a_choice_is_judged_at_once_not_held() {
    let s = scenario("hold-not-needed", "10m");
    s.send_consent(
        "u1",
        &consent(&[], &["analytics"], &rfc3339_from_now(-1_000)),
    );
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert_eq!(enforcer.metric("consent_enforcer_held_events_total"), 0.0);
    assert!(read_all(&hold_topic(&s)).is_empty());
}

#[test]
fn waiting_events_never_block_the_input() {
    let s = scenario("hold-nonblocking", "10m");
    let enforcer = s.start_ready();
    let started = Instant::now();
    let events: Vec<(String, String)> = (0..200)
        .map(|i| {
            (
                format!("anon-{i}"),
                track(&format!("anon-{i}"), &format!("m{i}")),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = events
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    s.send_events(&borrowed);
    s.wait_processed();
    assert!(started.elapsed() < WAIT);
    enforcer.wait_metric("consent_enforcer_held_events", 200.0);
    assert_eq!(s.delivered("warehouse").len(), 200);
}

#[test]
fn a_held_event_read_back_late_is_released_when_its_user_chose_in_time() {
    let s = scenario("hold-late-read", "3s");
    let mut enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    enforcer.wait_metric("consent_enforcer_held_events", 1.0);
    // The enforcer dies with the event waiting; the user chooses within max_age, and the
    // enforcer comes back only after max_age has passed.
    enforcer.kill9();
    s.send_consent(
        "u1",
        &consent(&["analytics"], &["advertising"], &rfc3339_from_now(0)),
    );
    std::thread::sleep(Duration::from_secs(4));
    let restarted = s.start_ready();
    restarted.wait_metric("consent_enforcer_held_events_released_total", 1.0);
    wait_committed(&s.group, &hold_topic(&s));
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert!(s.delivered("ads").is_empty());
    assert_eq!(
        restarted.metric("consent_enforcer_held_events_expired_total"),
        0.0
    );
}

/// An event dated further back than the history window before it arrived is replayed old
/// data or a clock far behind: a first choice made after it arrived must not reach back to
/// it, so it is not held.
#[test]
fn an_event_dated_before_the_history_window_is_not_held_and_a_later_grant_does_not_release_it() {
    let s = scenario("hold-too-old", "10m");
    let enforcer = s.start_ready();
    let thirty_days_ago = rfc3339_from_now(-30 * 86_400_000);
    s.send_events(&[("u1", &track_at("u1", "old", &thirty_days_ago))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("warehouse")), ["old"]);
    assert_eq!(enforcer.metric("consent_enforcer_held_events_total"), 0.0);
    s.send_consent("u1", &consent(&["analytics"], &[], &rfc3339_from_now(0)));
    s.send_events(&[("u1", &track("u1", "new"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["new"]);
    assert_eq!(
        enforcer.metric(
            r#"consent_enforcer_events_dropped_total{destination="amplitude",reason="no_consent"}"#
        ),
        1.0
    );
}

#[test]
fn a_released_event_carries_its_own_headers_but_none_of_the_enforcers_names() {
    let s = scenario("hold-own-source", "10m");
    let enforcer = s.start_ready();
    let mut event = Record::new("u1", &track("u1", "m1"));
    event.headers = vec![
        (
            "consent-enforcer-source".to_owned(),
            Some(b"upstream/0/5".to_vec()),
        ),
        ("origin".to_owned(), Some(b"web".to_vec())),
    ];
    produce(&s.input, &[event]);
    enforcer.wait_metric("consent_enforcer_held_events", 1.0);
    s.send_consent("u1", &consent(&["analytics"], &[], &rfc3339_from_now(0)));
    enforcer.wait_metric("consent_enforcer_held_events_released_total", 1.0);
    wait_committed(&s.group, &hold_topic(&s));
    let released = s.delivered("amplitude");
    assert_eq!(message_ids(&released), ["m1"]);
    assert_eq!(
        released[0].headers,
        [("origin".to_owned(), Some(b"web".to_vec()))]
    );
    assert_eq!(
        enforcer.metric("consent_enforcer_input_headers_stripped_total"),
        1.0
    );
}

#[test]
fn exactly_once_an_event_released_behind_a_waiting_one_is_delivered_once_across_a_restart() {
    let mut s = Scenario::new(
        "hold-exactly-once",
        vec![Destination::new("amplitude", &["analytics"])],
    );
    let hold_topic = format!("{}.hold", s.group);
    // One partition, so that both held events share it.
    create_topic(&hold_topic, 1, false);
    s.extra = format!("[hold]\nenabled = true\ntopic = \"{hold_topic}\"\nmax_age = \"4s\"\n");
    s.delivery_extra = format!(
        "guarantee = \"exactly_once\"\ntransactional_id = \"{}-tx\"",
        s.group
    );
    let mut enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1")), ("u2", &track("u2", "m2"))]);
    enforcer.wait_metric("consent_enforcer_held_events", 2.0);
    // u2 chooses while u1's earlier event still waits; then the enforcer dies.
    s.send_consent("u2", &consent(&["analytics"], &[], &rfc3339_from_now(0)));
    std::thread::sleep(Duration::from_millis(1_500));
    enforcer.kill9();
    let restarted = s.start_ready();
    restarted.wait_metric("consent_enforcer_held_events_expired_total", 1.0);
    restarted.wait_metric("consent_enforcer_held_events_released_total", 1.0);
    // Transaction markers count in the hold topic's end offset, so its commit is not waited
    // for; the release's transaction is.
    let deadline = Instant::now() + WAIT;
    while s.delivered("amplitude").is_empty() {
        assert!(Instant::now() < deadline, "m2 never delivered");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m2"]);
}

/// A record on the hold topic as a writer other than the enforcer might put it there.
fn forged(user: &str, id: &str, headers: &[(&str, &str)]) -> Record {
    let mut record = Record::new(user, &track(user, id));
    record.headers = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Some(v.as_bytes().to_vec())))
        .collect();
    record
}

#[test]
fn a_hold_record_without_destinations_or_naming_an_unknown_one_is_dead_lettered() {
    let s = scenario("hold-forged-destinations", "10m");
    let enforcer = s.start_ready();
    s.send_consent(
        "u1",
        &consent(
            &["analytics", "advertising"],
            &[],
            &rfc3339_from_now(-1_000),
        ),
    );
    produce(
        &hold_topic(&s),
        &[
            forged("u1", "no-header", &[("consent-enforcer-held-at", "0")]),
            forged(
                "u1",
                "unknown",
                &[
                    ("consent-enforcer-source", "events.raw/3/17"),
                    ("consent-enforcer-hold-destinations", "amplitude,nowhere"),
                ],
            ),
        ],
    );
    enforcer.wait_metric(
        r#"consent_enforcer_events_dead_lettered_total{reason="bad_hold_headers"}"#,
        2.0,
    );
    wait_committed(&s.group, &hold_topic(&s));
    for destination in ["amplitude", "ads", "warehouse"] {
        assert!(s.delivered(destination).is_empty(), "{destination}");
    }
    let dead = s.dead_letters();
    let reasons: Vec<String> = dead
        .iter()
        .filter_map(|r| r.header("consent-enforcer-error"))
        .collect();
    assert_eq!(reasons, ["bad_hold_headers", "bad_hold_headers"]);
    // Where the held event came from, for replaying it from the input topic.
    assert_eq!(dead[0].header("consent-enforcer-held-source"), None);
    assert_eq!(
        dead[1].header("consent-enforcer-held-source").as_deref(),
        Some("events.raw/3/17")
    );
    let source = dead[1]
        .header("consent-enforcer-source")
        .unwrap_or_default();
    assert!(
        source.starts_with(&format!("{}/", hold_topic(&s))) && source.ends_with("/1"),
        "{source}"
    );
}

#[test]
fn a_hold_record_stamped_in_the_future_still_expires_and_lets_the_partition_commit() {
    let s = scenario("hold-forged-future", "2s");
    let enforcer = s.start_ready();
    let far = (now_ms() + 10 * 365 * 86_400_000).to_string();
    produce(
        &hold_topic(&s),
        &[forged(
            "u9",
            "future",
            &[
                ("consent-enforcer-hold-destinations", "amplitude"),
                ("consent-enforcer-held-at", &far),
            ],
        )],
    );
    enforcer.wait_metric("consent_enforcer_held_events_expired_total", 1.0);
    wait_committed(&s.group, &hold_topic(&s));
    assert!(s.delivered("amplitude").is_empty());
}
