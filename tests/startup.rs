//! Start-up against the cluster: topics created just before, the hold topic, co-partitioned
//! mode with the hold.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn destinations() -> Vec<Destination> {
    vec![Destination::new("amplitude", &["analytics"])]
}

/// Writes the config with `startup_timeout_secs` and starts an enforcer on it.
fn start_with_timeout(s: &Scenario, startup_timeout_secs: u64) -> Enforcer {
    let port = free_port();
    let path = s.dir.join(format!("enforcer-{port}.toml"));
    let config = s.config(port).replace(
        "[kafka]\n",
        &format!("[kafka]\nstartup_timeout_secs = {startup_timeout_secs}\n"),
    );
    std::fs::write(&path, config).unwrap();
    Enforcer::start(&path, port)
}

/// Waits until /readyz answers 200; panics if the enforcer exits first.
fn wait_ready_or_exit(enforcer: &mut Enforcer, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((200, _)) = enforcer.get("/readyz") {
            return;
        }
        if let Some(status) = enforcer.try_exit() {
            panic!(
                "{what}: exited ({status}) before becoming ready; log:\n{}",
                enforcer.logs()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never ready; log:\n{}",
            enforcer.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut enforcer: Enforcer) {
    enforcer.signal("TERM");
    assert_eq!(
        enforcer.wait_exit(WAIT).code(),
        Some(0),
        "{}",
        enforcer.logs()
    );
}

#[test]
fn enforcer_started_right_after_its_topics_were_created_becomes_ready() {
    // Right after creation a partition's leader can answer "not leader" for a moment (the
    // broker's metadata shows it before the partition is loaded), the longer the more
    // partitions were created: with 48 consent partitions, many starts fall inside it. The
    // last round is exactly-once, whose producer's init also waits on the cluster.
    for round in 0..6 {
        let exactly_once = round == 5;
        let hold = unique("startup-race.hold");
        let mut s = Scenario::just_created("startup-race", destinations(), 3, 48, &[(&hold, 3)]);
        // Every start-up step that talks to the cluster: topic metadata (the hold topic
        // too), consent watermarks, and in the last round the transactional producer's init.
        s.extra = format!("[hold]\nenabled = true\ntopic = \"{hold}\"\n");
        if exactly_once {
            s.delivery_extra = format!(
                "guarantee = \"exactly_once\"\ntransactional_id = \"{}-a\"",
                s.group
            );
        }
        let mut enforcer = start_with_timeout(&s, 30);
        wait_ready_or_exit(&mut enforcer, &format!("round {round}"));
        let message = format!("m{round}");
        s.send_consent(
            "u1",
            &consent(&["analytics"], &[], &rfc3339_from_now(-60_000)),
        );
        s.send_events(&[("u1", &track("u1", &message))]);
        s.wait_processed_by(&enforcer);
        assert_eq!(message_ids(&s.delivered("amplitude")), [message]);
        stop(enforcer);
    }
}

#[test]
fn missing_hold_topic_is_a_start_up_error_naming_hold_topic() {
    let mut s = Scenario::new("hold-missing", destinations());
    s.extra = "[hold]\nenabled = true\ntopic = \"no-such-hold-topic\"\n".to_owned();
    let mut enforcer = s.start();
    assert_eq!(enforcer.wait_exit(Duration::from_secs(30)).code(), Some(1));
    let logs = enforcer.logs();
    assert!(
        logs.contains("\"no-such-hold-topic\" (hold.topic) does not exist"),
        "{logs}"
    );
}

fn copartitioned_with_hold(name: &str, hold_partitions: i32) -> Scenario {
    let mut s = Scenario::with_topics(name, destinations(), 2, 2);
    let hold = format!("{}.hold", s.group);
    create_topic(&hold, hold_partitions, false);
    s.consent_extra = "mode = \"copartitioned\"".to_owned();
    s.extra = format!("[hold]\nenabled = true\ntopic = \"{hold}\"\n");
    s
}

#[test]
fn copartitioned_mode_with_the_hold_starts_and_releases_held_events() {
    let s = copartitioned_with_hold("copart-hold", 2);
    let mut enforcer = s.start();
    wait_ready_or_exit(&mut enforcer, "co-partitioned with the hold");
    s.send_events(&[("u1", &track("u1", "m1"))]);
    enforcer.wait_metric("consent_enforcer_held_events", 1.0);
    s.send_consent("u1", &consent(&["analytics"], &[], &rfc3339_from_now(0)));
    enforcer.wait_metric("consent_enforcer_held_events_released_total", 1.0);
    s.wait_processed_by(&enforcer);
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    stop(enforcer);
}

#[test]
fn copartitioned_mode_needs_the_hold_topic_copartitioned_too() {
    let s = copartitioned_with_hold("copart-hold-unequal", 3);
    let mut enforcer = s.start();
    assert_eq!(enforcer.wait_exit(WAIT).code(), Some(1));
    let logs = enforcer.logs();
    assert!(
        logs.contains("hold.topic") && logs.contains("has 3") && logs.contains("has 2"),
        "{logs}"
    );
}
