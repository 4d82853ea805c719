//! Delivery across stops: at-least-once across kill -9; clean SIGTERM, with a full queue and
//! under load (exactly-once too); commits that keep up with a trickle; no commit past a write
//! that failed for good.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;

/// Users 0..n: even ones granted analytics, odd ones denied.
fn consented(user: usize) -> bool {
    user % 2 == 0
}

#[test]
fn at_least_once_across_kill_9_loses_nothing_and_leaks_nothing() {
    let s = Scenario::with_partitions(
        "kill9",
        vec![Destination::new("amplitude", &["analytics"])],
        3,
    );
    let users = 40;
    let consents: Vec<Record> = (0..users)
        .map(|u| {
            let value = if consented(u) {
                consent(&["analytics"], &[], "2026-11-22T10:00:00Z")
            } else {
                consent(&[], &["analytics"], "2026-11-22T10:00:00Z")
            };
            Record::new(&format!("user-{u}"), &value)
        })
        .collect();
    produce(&s.consent, &consents);
    let total = 20_000;
    let events: Vec<Record> = (0..total)
        .map(|i| {
            let user = format!("user-{}", i % users);
            Record::new(&user, &track(&user, &format!("e{i}")))
        })
        .collect();
    let mut enforcer = s.start_ready();
    produce(&s.input, &events);
    // Kill it mid-stream: some events delivered, the input not wholly committed.
    enforcer.wait_metric(
        r#"consent_enforcer_events_delivered_total{destination="amplitude"}"#,
        100.0,
    );
    enforcer.kill9();
    let committed: i64 = committed_offsets(&s.group, &s.input).values().sum();
    assert!(
        committed < total as i64,
        "the kill came after everything was committed; the test exercised nothing"
    );

    let _restarted = s.start_ready();
    s.wait_processed();
    let delivered = message_ids(&s.delivered("amplitude"));
    let got: HashSet<&str> = delivered.iter().map(String::as_str).collect();
    let expected: HashSet<String> = (0..total)
        .filter(|i| consented(i % users))
        .map(|i| format!("e{i}"))
        .collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| !got.contains(e.as_str()))
        .collect();
    let leaked: Vec<&&str> = got.iter().filter(|e| !expected.contains(**e)).collect();
    assert!(
        missing.is_empty(),
        "{} consented events lost",
        missing.len()
    );
    assert!(leaked.is_empty(), "{} events leaked", leaked.len());
}

#[test]
fn sigterm_with_a_full_producer_queue_exits_0_and_loses_nothing() {
    let mut s = Scenario::new(
        "sigterm-queue-full",
        vec![Destination::new("amplitude", &["analytics"])],
    );
    s.extra = "[kafka.producer_properties]\n\"queue.buffering.max.messages\" = \"50\"\n".to_owned();
    produce(&s.consent, &analytics_consents(100, consented));
    produce(&s.input, &track_events(0..20_000, 100));
    let mut enforcer = s.start_ready();
    std::thread::sleep(Duration::from_secs(1));
    enforcer.signal("TERM");
    let status = enforcer.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", enforcer.logs());
    // What it did not finish, the next instance does.
    let _next = s.start_ready();
    s.wait_processed();
    let got: HashSet<String> = message_ids(&s.delivered("amplitude")).into_iter().collect();
    let missing = (0..20_000)
        .filter(|i| consented(i % 100) && !got.contains(&format!("e{i}")))
        .count();
    assert_eq!(missing, 0, "consented events lost");
}

/// Acknowledgements are settled as fast as the broker gives them: a trickle of events, each
/// written to six destinations, is committed within seconds of the last one. (When each turn
/// of the pipeline served one produce response, the acknowledgements of six partitions per
/// event fell behind, and the commit trailed the last event by half a minute.)
#[test]
fn a_trickle_of_fanned_out_events_is_committed_within_seconds() {
    const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
    let destinations = NAMES
        .iter()
        .map(|name| Destination::new(name, &[]).partitions(3))
        .collect();
    let s = Scenario::with_partitions("trickle", destinations, 3);
    let enforcer = s.start_ready();
    for i in 0..300 {
        let user = format!("user-{i}");
        produce_one(&s.input, &user, &track(&user, &format!("e{i}")));
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Err(seen) = committed_by(&s.group, &s.input, Instant::now() + Duration::from_secs(8)) {
        panic!(
            "not committed 8 s after the last event: {seen}, writes in flight {}",
            enforcer.metric("consent_enforcer_writes_in_flight")
        );
    }
    // Each commit's answer is counted (librdkafka posts none for a plain asynchronous one).
    assert!(
        enforcer.metric(r#"consent_enforcer_offset_commits_total{result="ok"}"#) >= 1.0,
        "no commit answer counted"
    );
    for destination in NAMES {
        assert_eq!(s.delivered(destination).len(), 300, "{destination}");
    }
}

/// `count` track events of 17 users, numbered `e0`...
fn backlog(count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let user = format!("user-{i}", i = i % 17);
            Record::new(&user, &track(&user, &format!("e{i}")))
        })
        .collect()
}

/// Starts an enforcer on the scenario's config with `replace` applied to its text, feeds it
/// `events` and sends SIGTERM once `delivered` have been delivered (writes are in flight
/// then). Returns the exit status and how long the stop took.
fn sigterm_under_load(
    s: &Scenario,
    replace: &[(&str, &str)],
    events: usize,
    delivered: f64,
) -> (Enforcer, std::process::ExitStatus, Duration) {
    let port = free_port();
    let config = s.dir.join("sigterm.toml");
    let mut text = s.config(port);
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    std::fs::write(&config, text).unwrap();
    let mut enforcer = Enforcer::start(&config, port);
    enforcer.wait_ready();
    produce(&s.input, &backlog(events));
    enforcer.wait_metric(
        r#"consent_enforcer_events_delivered_total{destination="warehouse"}"#,
        delivered,
    );
    let stop_asked = Instant::now();
    enforcer.signal("TERM");
    let status = enforcer.wait_exit(Duration::from_secs(40));
    let took = stop_asked.elapsed();
    (enforcer, status, took)
}

/// What is committed is exactly what was delivered: nothing committed that was not
/// delivered, nothing delivered that was not committed.
fn assert_committed_is_delivered(s: &Scenario, delivered: &HashSet<String>) {
    let committed = committed_offsets(&s.group, &s.input);
    assert!(!committed.is_empty(), "offsets were committed on shutdown");
    for record in read_all(&s.input) {
        let id = message_ids(std::slice::from_ref(&record)).remove(0);
        let is_committed = committed
            .get(&record.partition)
            .is_some_and(|c| record.offset < *c);
        assert_eq!(
            is_committed,
            delivered.contains(&id),
            "{id}: committed {is_committed}, delivered {}",
            delivered.contains(&id)
        );
    }
}

#[test]
fn sigterm_drains_commits_and_exits_0() {
    let s = Scenario::with_partitions("sigterm", vec![Destination::new("warehouse", &[])], 3);
    // No periodic commits: what is committed, the shutdown committed. Under load: a backlog
    // of 20,000 events, the signal after the first 1,000 are delivered.
    let (enforcer, status, took) = sigterm_under_load(
        &s,
        &[
            ("commit_interval_ms = 200", "commit_interval_ms = 600000"),
            ("drain_timeout_secs = 20", "drain_timeout_secs = 10"),
        ],
        20_000,
        1_000.0,
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", enforcer.logs());
    assert!(took <= Duration::from_secs(11), "stopped after {took:?}");
    let delivered: HashSet<String> = message_ids(&s.delivered("warehouse")).into_iter().collect();
    assert_committed_is_delivered(&s, &delivered);
}

#[test]
fn exactly_once_sigterm_under_load_exits_0_within_the_deadline_and_aborts_nothing() {
    let mut s =
        Scenario::with_partitions("eos-sigterm", vec![Destination::new("warehouse", &[])], 3);
    s.delivery_extra = format!(
        "guarantee = \"exactly_once\"\ntransactional_id = \"{}-a\"",
        s.group
    );
    // A queue that never fills here: a write that cannot be queued while stopping aborts
    // the last transaction by design (README, Operations).
    s.kafka_properties = "\"queue.buffering.max.messages\" = \"100000\"".to_owned();
    // 5 s: the commit keeps a quarter of it for an abort, not a fixed 5 s.
    let (enforcer, status, took) = sigterm_under_load(
        &s,
        &[("drain_timeout_secs = 20", "drain_timeout_secs = 5")],
        20_000,
        1_000.0,
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", enforcer.logs());
    assert!(took <= Duration::from_secs(6), "stopped after {took:?}");
    // The last transaction was committed, not aborted: a read_uncommitted reader sees no
    // record that a read_committed one does not. Each delivered event once.
    let delivered = s.delivered("warehouse");
    assert_eq!(
        read_all_uncommitted(s.topic("warehouse")).len(),
        delivered.len(),
        "records of an aborted transaction; log:\n{}",
        enforcer.logs()
    );
    let ids = message_ids(&delivered);
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates");
    assert_committed_is_delivered(&s, &unique);
}

#[test]
fn write_that_cannot_succeed_stops_the_service_without_committing_past_it() {
    let s = Scenario::new(
        "write-fails",
        vec![Destination::new("warehouse", &[]).topic_config("max.message.bytes", "1000")],
    );
    let mut enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "small"))]);
    s.wait_processed();
    let big = format!(
        r#"{{"userId":"u1","messageId":"big","pad":"{}"}}"#,
        "x".repeat(5_000)
    );
    s.send_events(&[("u1", &big), ("u1", &track("u1", "after"))]);
    let status = enforcer.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1), "log:\n{}", enforcer.logs());
    assert!(
        enforcer.logs().contains("failed"),
        "log:\n{}",
        enforcer.logs()
    );
    // The small event (offset 0) is committed; the failed one (offset 1) is not.
    assert_eq!(committed_offsets(&s.group, &s.input).get(&0), Some(&1));
}
