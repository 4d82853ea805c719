//! Exactly-once across a broker restart. The broker is restarted, so this binary starts its
//! own (on 127.0.0.1:19192) rather than disturb the tests sharing the usual one; its tests
//! take turns.

mod common;

use std::collections::HashMap;

use common::*;

const PORT: &str = "19192";

fn broker(command: &str) {
    kafka_script(command, PORT);
}

/// The tests of this binary share its broker, one at a time.
fn own_broker() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    broker("fresh");
    // The helpers read the broker address once, from here on.
    std::env::set_var(TEST_BOOTSTRAP_ENV, format!("127.0.0.1:{PORT}"));
    assert_eq!(bootstrap(), format!("127.0.0.1:{PORT}"));
    turn
}

#[test]
fn exactly_once_across_a_broker_restart_delivers_each_consented_event_once() {
    let _turn = own_broker();

    let mut s = Scenario::with_partitions(
        "eos-broker-restart",
        vec![Destination::new("amplitude", &["analytics"])],
        3,
    );
    s.delivery_extra = format!(
        "guarantee = \"exactly_once\"\ntransactional_id = \"{}-a\"",
        s.group
    );
    s.consent_extra = "max_staleness_ms = 120000".to_owned();
    let users = 20;
    produce(&s.consent, &analytics_consents(users, |u| u % 2 == 0));
    let events = |range: std::ops::Range<usize>| track_events(range, users);
    let enforcer = s.start_ready();
    produce(&s.input, &events(0..10_000));
    enforcer.wait_metric("consent_enforcer_events_received_total", 1_000.0);
    broker("restart");
    produce(&s.input, &events(10_000..15_000));
    s.wait_processed_by(&enforcer);

    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in message_ids(&s.delivered("amplitude")) {
        *seen.entry(id).or_default() += 1;
    }
    let expected = |i: usize| (i % users) % 2 == 0;
    let lost = (0..15_000)
        .filter(|i| expected(*i) && !seen.contains_key(&format!("e{i}")))
        .count();
    let leaked = seen
        .keys()
        .filter(|id| !expected(id[1..].parse::<usize>().unwrap()))
        .count();
    let duplicated = seen.values().filter(|n| **n > 1).count();
    println!("broker restart: lost {lost}, leaked {leaked}, duplicated {duplicated}");
    assert_eq!(
        (lost, leaked, duplicated),
        (0, 0, 0),
        "log:\n{}",
        enforcer.logs()
    );
    broker("stop");
}
