//! Several instances in one group, instances added, killed and restarted mid-stream, in both
//! delivery modes: zero lost, zero leaked, and zero duplicates in exactly-once mode.

mod common;

use std::collections::HashMap;

use common::*;

const USERS: usize = 40;

/// Even users granted analytics, odd ones denied.
fn consented(user: usize) -> bool {
    user % 2 == 0
}

fn scenario(name: &str, exactly_once: bool) -> Scenario {
    let mut s =
        Scenario::with_partitions(name, vec![Destination::new("amplitude", &["analytics"])], 6);
    if exactly_once {
        s.delivery_extra = format!(
            "guarantee = \"exactly_once\"\ntransactional_id = \"{}-{{instance}}\"",
            s.group
        );
    }
    produce(&s.consent, &analytics_consents(USERS, consented));
    s
}

fn events(range: std::ops::Range<usize>) -> Vec<Record> {
    track_events(range, USERS)
}

/// Writes events from `written` on, a thousand at a time, until `instance` has received some
/// (a newcomer gets partitions only once the group rebalances; until then the others may
/// take everything). Returns how many events the input holds now.
fn feed_until_received(s: &Scenario, instance: &Enforcer, mut written: usize) -> usize {
    while instance.metric("consent_enforcer_events_received_total") < 1.0 {
        assert!(
            written < 60_000,
            "the second instance never received an event"
        );
        produce(&s.input, &events(written..written + 1_000));
        written += 1_000;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    written
}

/// Counts against the ground truth: (lost, leaked, duplicated).
/// A plain consumer joins the group, waits at most `within` for partitions, then leaves
/// (the instance gets them back).
fn join_and_leave(s: &Scenario, within: std::time::Duration, instance: &Enforcer) {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::time::{Duration, Instant};

    let newcomer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &s.group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("newcomer");
    newcomer.subscribe(&[&s.input]).expect("subscribe");
    let started = Instant::now();
    while newcomer.assignment().map_or(0, |a| a.count()) == 0 {
        assert!(
            started.elapsed() < within,
            "the newcomer got no partitions within {within:?}; log:\n{}",
            instance.logs()
        );
        let _ = newcomer.poll(Duration::from_millis(100));
    }
}

fn verdict(s: &Scenario, total: usize) -> (usize, usize, usize) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in message_ids(&s.delivered("amplitude")) {
        *seen.entry(id).or_default() += 1;
    }
    let expected = |i: usize| consented(i % USERS);
    let lost = (0..total)
        .filter(|i| expected(*i) && !seen.contains_key(&format!("e{i}")))
        .count();
    let leaked = seen
        .keys()
        .filter(|id| id[1..].parse::<usize>().map_or(true, |i| !expected(i)))
        .count();
    let duplicated = seen.values().filter(|n| **n > 1).count();
    println!("lost {lost}, leaked {leaked}, duplicated {duplicated}");
    (lost, leaked, duplicated)
}

#[test]
fn at_least_once_two_instances_one_added_one_killed_loses_and_leaks_nothing() {
    let s = scenario("alo-scale", false);
    let first = s.start_instance("a");
    first.wait_ready();
    produce(&s.input, &events(0..5_000));
    let mut second = s.start_instance("b");
    second.wait_ready();
    let mut written = feed_until_received(&s, &second, 5_000);
    second.kill9();
    produce(&s.input, &events(written..written + 5_000));
    written += 5_000;
    s.wait_processed();
    let (lost, leaked, _) = verdict(&s, written);
    assert_eq!((lost, leaked), (0, 0));
}

#[test]
fn at_least_once_rolling_restart_loses_and_leaks_nothing() {
    let s = scenario("alo-rolling", false);
    let mut a = s.start_instance("a");
    let mut b = s.start_instance("b");
    a.wait_ready();
    b.wait_ready();
    produce(&s.input, &events(0..4_000));
    for (i, instance) in [&mut a, &mut b].into_iter().enumerate() {
        instance.signal("TERM");
        assert_eq!(instance.wait_exit(WAIT).code(), Some(0));
        produce(&s.input, &events(4_000 * (i + 1)..4_000 * (i + 2)));
        *instance = s.start_instance(if i == 0 { "a" } else { "b" });
        instance.wait_ready();
    }
    s.wait_processed();
    let (lost, leaked, _) = verdict(&s, 12_000);
    assert_eq!((lost, leaked), (0, 0));
}

/// Static membership (`group.instance.id`, here with a 6 s session timeout): an instance
/// killed and restarted under the same identity rejoins without the group moving its
/// partitions in between, and resumes from the committed offsets.
#[test]
fn at_least_once_static_member_killed_and_restarted_loses_and_leaks_nothing() {
    let mut s = scenario("alo-static", false);
    s.kafka_properties = format!("\"group.instance.id\" = \"{}-{{instance}}\"", s.group);
    let a = s.start_instance("a");
    let mut b = s.start_instance("b");
    a.wait_ready();
    b.wait_ready();
    // Until both own partitions, one may judge everything written: keep writing until each
    // has judged something of its own, so the kill comes after the group settled. (A member
    // killed between the two steps of a cooperative rebalance leaves the partitions it gave
    // up unowned until the next rebalance, which its static rejoin does not trigger.)
    let written = feed_until_received(&s, &b, 0);
    let written = feed_until_received(&s, &a, written);
    b.kill9();
    produce(&s.input, &events(written..written + 4_000));
    let b = s.start_instance("b");
    b.wait_ready();
    s.wait_processed();
    let (lost, leaked, _) = verdict(&s, written + 4_000);
    assert_eq!((lost, leaked), (0, 0));
    assert!(
        b.metric("consent_enforcer_events_received_total") > 0.0,
        "the restarted member judged none of its partitions' events"
    );
}

#[test]
fn exactly_once_across_kill_9_delivers_each_consented_event_once() {
    let s = scenario("eos-kill", true);
    let mut enforcer = s.start_instance("a");
    enforcer.wait_ready();
    produce(&s.input, &events(0..20_000));
    enforcer.wait_metric("consent_enforcer_events_received_total", 2_000.0);
    enforcer.kill9();
    let committed: i64 = committed_offsets(&s.group, &s.input).values().sum();
    assert!(
        committed < 20_000,
        "killed after the end; the test exercised nothing"
    );
    // The same transactional id fences the dead instance and aborts its open transaction.
    let restarted = s.start_instance("a");
    restarted.wait_ready();
    s.wait_processed();
    let (lost, leaked, duplicated) = verdict(&s, 20_000);
    assert_eq!((lost, leaked, duplicated), (0, 0, 0));
    assert!(restarted.metric(r#"consent_enforcer_transactions_total{result="committed"}"#) > 0.0);
}

#[test]
fn exactly_once_two_instances_one_added_one_killed_has_no_duplicates() {
    let s = scenario("eos-scale", true);
    let a = s.start_instance("a");
    a.wait_ready();
    produce(&s.input, &events(0..6_000));
    let mut b = s.start_instance("b");
    b.wait_ready();
    let mut written = feed_until_received(&s, &b, 6_000);
    b.kill9();
    // Its partitions come back to `a` once the session times out; its open transaction is
    // aborted by the broker after transaction.timeout.ms or by a restart with its id.
    let _b_again = s.start_instance("b");
    produce(&s.input, &events(written..written + 6_000));
    written += 6_000;
    s.wait_processed();
    let (lost, leaked, duplicated) = verdict(&s, written);
    assert_eq!((lost, leaked, duplicated), (0, 0, 0));
}

#[test]
fn exactly_once_two_instances_with_one_transactional_id_one_stops_and_nothing_is_duplicated() {
    let mut s = scenario("eos-fenced", true);
    // Long transactions, so that the fencing is found when committing one (where the old
    // code replaced its producer), not only by a write.
    s.delivery_extra = format!(
        "guarantee = \"exactly_once\"\ntransactional_id = \"{}-shared\"\ntransaction_interval_ms = 3000",
        s.group
    );
    let mut a = s.start_instance("a");
    a.wait_ready();
    produce(&s.input, &events(0..3_000));
    a.wait_metric("consent_enforcer_events_received_total", 3_000.0);
    // The second instance's init_transactions fences the first: one of them must stop (exit
    // 1) instead of replacing its producer and fencing the other in turn.
    let mut b = s.start_instance("b");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let written = 3_000;
    let stopped = loop {
        if let Some(status) = a.exited() {
            break ("a", status);
        }
        if let Some(status) = b.exited() {
            break ("b", status);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither instance stopped; a:\n{}\nb:\n{}",
            a.logs(),
            b.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(stopped.1.code(), Some(1), "{} stopped", stopped.0);
    let (survivor, fenced) = if stopped.0 == "a" {
        (&mut b, &a)
    } else {
        (&mut a, &b)
    };
    assert!(
        fenced
            .logs()
            .contains("fenced: another instance uses this delivery.transactional_id"),
        "log:\n{}",
        fenced.logs()
    );
    assert!(survivor.exited().is_none(), "log:\n{}", survivor.logs());
    s.wait_processed();
    let (lost, leaked, duplicated) = verdict(&s, written);
    assert_eq!((lost, leaked, duplicated), (0, 0, 0));
}

#[test]
fn a_stale_consent_table_keeps_the_instance_in_its_group_and_a_newcomer_gets_partitions() {
    use rdkafka::producer::Producer;
    use std::time::{Duration, Instant};

    let mut s = scenario("stale-rebalance", false);
    s.consent_extra = "max_wait_ms = 200\nmax_staleness_ms = 1000".to_owned();
    // A member that stops polling for this long is dropped from the group by librdkafka;
    // a newcomer's rebalance waits for it as long, unless the member serves it.
    s.kafka_properties =
        "\"max.poll.interval.ms\" = \"15000\"\n\"session.timeout.ms\" = \"6000\"".to_owned();
    let a = s.start_instance("a");
    a.wait_ready();
    // A transaction left open on the consent topic makes the table stale (not ready).
    let writer = leave_a_transaction_open(&s.consent, &format!("{}-cmp", s.group));
    produce(&s.consent, &analytics_consents(1, |_| true));
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.get("/readyz").map(|r| r.0) != Some(503) {
        assert!(Instant::now() < deadline, "never stale; log:\n{}", a.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Enough events for both of its batches to wait.
    produce(&s.input, &events(0..5_000));
    let waiting_since = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    // A newcomer to the group (a plain consumer: an enforcer would itself wait for the open
    // transaction before joining) gets its partitions well before max.poll.interval.ms: the
    // waiting instance served the rebalance. Then it leaves, and the instance takes them back.
    join_and_leave(&s, Duration::from_secs(8), &a);
    // Still waiting, past max.poll.interval.ms: an instance dropped from the group would
    // write the events it holds of partitions it no longer owns, and read them again
    // (duplicates) once it rejoined.
    std::thread::sleep(Duration::from_secs(17).saturating_sub(waiting_since.elapsed()));
    writer.abort_transaction(WAIT).expect("abort_transaction");
    s.wait_processed();
    assert_eq!(verdict(&s, 5_000), (0, 0, 0));
}

/// A revoked partition whose drain times out is given up with writes of it unacknowledged;
/// it comes back before they are, and the instance is then killed. Acknowledgements of the
/// earlier assignment must not credit the events read again under the new one: no offset is
/// committed past an event whose write was not acknowledged.
#[test]
fn a_revoked_partition_whose_drain_timed_out_comes_back_then_sigkill_commits_nothing_unacknowledged(
) {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let mut s = scenario("alo-drain-timeout", false);
    // Writes wait 3 s in the producer before they are sent, so a revoked partition's drain
    // (1 s here) times out with writes of it unacknowledged.
    s.kafka_properties = "\"linger.ms\" = \"3000\"".to_owned();
    let port = free_port();
    let path = s.dir.join("a.toml");
    let text = s
        .config(port)
        .replace("{instance}", "a")
        .replace("drain_timeout_secs = 20", "drain_timeout_secs = 1");
    std::fs::write(&path, text).unwrap();
    let mut a = Enforcer::start(&path, port);
    a.wait_ready();

    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        let input = s.input.clone();
        std::thread::spawn(move || {
            let mut written = 0;
            while !stop.load(Ordering::Relaxed) {
                produce(&input, &events(written..written + 50));
                written += 50;
                std::thread::sleep(Duration::from_millis(100));
            }
            written
        })
    };
    // Commits have moved the partitions on before they are revoked.
    a.wait_metric(r#"consent_enforcer_offset_commits_total{result="ok"}"#, 2.0);
    // It leaves at once: the partitions go back to the instance.
    join_and_leave(&s, Duration::from_secs(20), &a);
    a.wait_metric(
        r#"consent_enforcer_errors_total{stage="delivery",error_type="revoke_drain"}"#,
        1.0,
    );
    // The earlier assignment's writes are acknowledged meanwhile, the new one's not all yet.
    std::thread::sleep(Duration::from_secs(3));
    a.kill9();
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder");

    let committed = committed_offsets(&s.group, &s.input);
    let delivered: HashSet<String> = message_ids(&s.delivered("amplitude")).into_iter().collect();
    let mut checked = 0;
    for record in read_all(&s.input) {
        if committed
            .get(&record.partition)
            .is_none_or(|c| record.offset >= *c)
        {
            continue;
        }
        let id = message_ids(std::slice::from_ref(&record)).remove(0);
        let i: usize = id[1..].parse().expect("event number");
        if consented(i % USERS) {
            checked += 1;
            assert!(
                delivered.contains(&id),
                "{id} committed (partition {}, offset {}) but never delivered",
                record.partition,
                record.offset
            );
        }
    }
    assert!(checked > 0, "nothing committed");
}
