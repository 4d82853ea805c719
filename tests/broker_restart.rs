//! Exactly-once across broker faults: a restart, and a broker paused during shutdown. The
//! broker is restarted and paused, so this binary starts its own (on 127.0.0.1:19192) rather
//! than disturb the tests sharing the usual one; its tests take turns.

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

/// Sends `signal` to the broker process.
fn signal_broker(signal: &str) {
    let dir = std::env::var("CONSENT_ENFORCER_CACHE_DIR").map_or_else(
        |_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/consent-enforcer")
        },
        std::path::PathBuf::from,
    );
    let pid =
        std::fs::read_to_string(dir.join(format!("broker-{PORT}/broker.pid"))).expect("broker pid");
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.trim())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} the broker");
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

#[test]
fn exactly_once_shutdown_with_the_broker_paused_ends_within_the_drain_timeout() {
    check_shutdown_with_the_broker_paused("eos-broker-paused", true);
}

#[test]
fn at_least_once_shutdown_with_the_broker_paused_ends_within_the_drain_timeout() {
    check_shutdown_with_the_broker_paused("alo-broker-paused", false);
}

fn check_shutdown_with_the_broker_paused(name: &str, exactly_once: bool) {
    let _turn = own_broker();
    let mut s =
        Scenario::with_partitions(name, vec![Destination::new("amplitude", &["analytics"])], 3);
    if exactly_once {
        s.delivery_extra = format!(
            "guarantee = \"exactly_once\"\ntransactional_id = \"{}-a\"",
            s.group
        );
    }
    produce(&s.consent, &analytics_consents(20, |u| u % 2 == 0));
    let port = free_port();
    let config = s.dir.join("paused.toml");
    let text = s
        .config(port)
        .replace("drain_timeout_secs = 20", "drain_timeout_secs = 5");
    std::fs::write(&config, text).expect("write config");
    let mut enforcer = Enforcer::start(&config, port);
    enforcer.wait_ready();
    produce(&s.input, &track_events(0..20_000, 20));
    enforcer.wait_metric("consent_enforcer_events_received_total", 2_000.0);
    // The broker stops answering, then SIGTERM: draining, committing (and aborting) and
    // leaving the group all wait on it, and together they must end within
    // delivery.drain_timeout_secs.
    signal_broker("STOP");
    let stopped_at = std::time::Instant::now();
    enforcer.signal("TERM");
    let status = enforcer.wait_exit(std::time::Duration::from_secs(30));
    let took = stopped_at.elapsed();
    signal_broker("CONT");
    println!("{name}: exit {status:?} after {took:?}");
    assert!(
        // The deadline (5 s), and the service's grace of 1 s past it.
        took <= std::time::Duration::from_secs(7),
        "stopped after {took:?} ({status:?}); log:\n{}",
        enforcer.logs()
    );
    // Restarted, as a supervisor would, it goes on where the group's commits end; in
    // exactly-once its start aborts the transaction left open, so read_committed readers do
    // not wait for the broker's transaction timeout. Nothing is lost or leaked, and in
    // exactly-once nothing is duplicated.
    let restarted = Enforcer::start(&config, port);
    restarted.wait_ready();
    s.wait_processed_by(&restarted);
    let reading = std::time::Instant::now();
    let delivered = s.delivered("amplitude");
    let read_in = reading.elapsed();
    assert!(
        read_in <= std::time::Duration::from_secs(10),
        "read_committed readers waited {read_in:?}"
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in message_ids(&delivered) {
        *seen.entry(id).or_default() += 1;
    }
    let expected = |i: usize| (i % 20) % 2 == 0;
    let lost = (0..20_000)
        .filter(|i| expected(*i) && !seen.contains_key(&format!("e{i}")))
        .count();
    let leaked = seen
        .keys()
        .filter(|id| !id[1..].parse::<usize>().is_ok_and(expected))
        .count();
    let duplicated = seen.values().filter(|n| **n > 1).count();
    println!("{name}: lost {lost}, leaked {leaked}, duplicated {duplicated}");
    assert_eq!((lost, leaked), (0, 0), "log:\n{}", restarted.logs());
    if exactly_once {
        assert_eq!(duplicated, 0, "log:\n{}", restarted.logs());
    }
    drop(restarted);
    broker("stop");
}
