//! Co-partitioned mode: each instance holds only the consent partitions matching its input
//! partitions, and judges exactly as the global mode would.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

const USERS: usize = 60;

fn consented(user: usize) -> bool {
    user % 3 != 0
}

fn scenario(name: &str, input_partitions: i32, consent_partitions: i32) -> Scenario {
    let mut s = Scenario::with_topics(
        name,
        vec![Destination::new("amplitude", &["analytics"])],
        input_partitions,
        consent_partitions,
    );
    s.consent_extra = "mode = \"copartitioned\"".to_owned();
    s
}

#[test]
fn unequal_partition_counts_are_a_clear_start_up_error() {
    let s = scenario("copart-unequal", 4, 2);
    let mut enforcer = s.start();
    assert_eq!(enforcer.wait_exit(WAIT).code(), Some(1));
    let logs = enforcer.logs();
    assert!(
        logs.contains("copartitioned")
            && logs.contains("input.topics[0]")
            && logs.contains("has 4"),
        "{logs}"
    );
}

#[test]
fn two_instances_each_hold_their_share_and_route_as_the_global_mode_would() {
    let s = scenario("copart-share", 4, 4);
    // Consent and events are written by the same producer with the same keys, so both
    // topics put a user in the same partition.
    produce(&s.consent, &analytics_consents(USERS, consented));
    let a = s.start_instance("a");
    let b = s.start_instance("b");
    a.wait_ready();
    b.wait_ready();
    let total = 3_000;
    produce(&s.input, &track_events(0..total, USERS));
    s.wait_processed();

    let delivered: Vec<String> = message_ids(&s.delivered("amplitude"));
    let unique: HashSet<&String> = delivered.iter().collect();
    let expected: HashSet<String> = (0..total)
        .filter(|i| consented(i % USERS))
        .map(|i| format!("e{i}"))
        .collect();
    let leaked = unique.iter().filter(|id| !expected.contains(**id)).count();
    let lost = expected.iter().filter(|id| !unique.contains(id)).count();
    assert_eq!((lost, leaked), (0, 0));

    // The split settles once both instances have joined and loaded their partitions.
    let deadline = std::time::Instant::now() + WAIT;
    let (mut states_a, mut states_b);
    loop {
        states_a = a.metric("consent_enforcer_consent_states");
        states_b = b.metric("consent_enforcer_consent_states");
        let settled = states_a + states_b == USERS as f64 && states_a > 0.0 && states_b > 0.0;
        if settled || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        states_a + states_b,
        USERS as f64,
        "a {states_a}, b {states_b}"
    );
    assert!(
        states_a > 0.0 && states_b > 0.0,
        "a {states_a}, b {states_b}"
    );

    // b stops: a takes over its partitions and loads their consent before judging.
    let mut b = b;
    b.signal("TERM");
    assert_eq!(b.wait_exit(WAIT).code(), Some(0));
    produce(&s.input, &track_events(total..2 * total, USERS));
    s.wait_processed();
    let delivered: HashSet<String> = message_ids(&s.delivered("amplitude")).into_iter().collect();
    let leaked = delivered
        .iter()
        .filter(|id| !consented(id[1..].parse::<usize>().unwrap() % USERS))
        .count();
    let lost = (0..2 * total)
        .filter(|i| consented(i % USERS) && !delivered.contains(&format!("e{i}")))
        .count();
    assert_eq!((lost, leaked), (0, 0));
    assert_eq!(a.metric("consent_enforcer_consent_states"), USERS as f64);
}

#[test]
fn a_consent_change_reaches_the_instance_that_owns_the_user() {
    let s = scenario("copart-change", 2, 2);
    let enforcer = s.start_ready();
    s.send_consent("u1", &consent(&["analytics"], &[], &rfc3339_from_now(0)));
    next_millisecond();
    s.send_events(&[("u1", &track("u1", "granted"))]);
    s.wait_processed();
    s.send_consent("u1", &consent(&[], &["analytics"], &rfc3339_from_now(0)));
    next_millisecond();
    s.send_events(&[("u1", &track("u1", "revoked"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["granted"]);
    assert!(enforcer.metric("consent_enforcer_consent_states") >= 1.0);
}

/// A partition of two other than the one the enforcer's murmur2 partitioner gives `key`, as
/// a producer partitioning by another hash (librdkafka's default CRC32) may choose.
fn other_partition(key: &str) -> i32 {
    1 - java_partition(key.as_bytes(), 2)
}

#[test]
fn a_stale_record_is_overridden_in_its_own_partition_and_a_held_event_released_there() {
    let mut s = scenario("copart-own-partition", 2, 2);
    let hold_topic = format!("{}.hold", s.group);
    create_topic(&hold_topic, 2, false);
    s.extra = format!("[hold]\nenabled = true\ntopic = \"{hold_topic}\"\nmax_age = \"10m\"\n");
    // u1's consent and events are in the partition another producer's hash chose.
    let p = other_partition("u1");
    produce_to_partition(
        &s.consent,
        p,
        "u1",
        &consent(&[], &["analytics"], &rfc3339_from_now(-1_000)),
    );
    produce_to_partition(
        &s.consent,
        p,
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-60_000)),
    );
    let u2 = "u2";
    let q = other_partition(u2);
    let enforcer = s.start_ready();
    enforcer.wait_metric("consent_enforcer_consent_records_republished_total", 1.0);
    // The newer state is re-published where the stale record is, so compaction keeps it.
    let republished: Vec<Record> = read_all(&s.consent)
        .into_iter()
        .filter(|r| r.header("consent-enforcer-republished").is_some())
        .collect();
    assert_eq!(republished.len(), 1);
    assert_eq!(republished[0].partition, p);
    // A held event goes to the hold partition of its input partition, whose table sees its
    // user's first choice.
    produce_to_partition(&s.input, q, u2, &track(u2, "m1"));
    enforcer.wait_metric("consent_enforcer_held_events", 1.0);
    produce_to_partition(
        &s.consent,
        q,
        u2,
        &consent(&["analytics"], &[], &rfc3339_from_now(0)),
    );
    enforcer.wait_metric("consent_enforcer_held_events_released_total", 1.0);
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
}

#[test]
fn a_revocation_re_published_in_its_own_partition_survives_compaction_and_a_restart() {
    let s = scenario("copart-compaction", 2, 2);
    // Segments roll every 100 ms (on the next write) and the broker's cleaner, which looks
    // every second, compacts whatever is dirty.
    set_topic_configs(
        &s.consent,
        &[
            ("cleanup.policy", "compact"),
            ("segment.ms", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    // A revocation, then a stale grant written after it, both where another producer's hash
    // put them.
    let p = other_partition("u1");
    produce_to_partition(
        &s.consent,
        p,
        "u1",
        &consent(&[], &["analytics"], &rfc3339_from_now(-1_000)),
    );
    produce_to_partition(
        &s.consent,
        p,
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-60_000)),
    );
    {
        let enforcer = s.start_ready();
        enforcer.wait_metric("consent_enforcer_consent_records_republished_total", 1.0);
    }
    // Compaction keeps the last record of each key in each partition: until it has run, u1
    // has three records in its partition (re-published state included).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let u1 = read_all(&s.consent)
            .into_iter()
            .filter(|r| r.partition == p && r.key_str() == "u1")
            .count();
        if u1 == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the consent topic was not compacted: u1 has {u1} records"
        );
        // A write after segment.ms rolls the segment, so the cleaner may take it.
        std::thread::sleep(Duration::from_millis(300));
        produce_to_partition(
            &s.consent,
            p,
            "filler",
            &consent(&["analytics"], &[], &rfc3339_from_now(0)),
        );
    }
    // After a restart, the table of u1's partition holds what compaction kept: the revocation.
    let enforcer = s.start_ready();
    produce_to_partition(&s.input, p, "u1", &track("u1", "m1"));
    s.wait_processed_by(&enforcer);
    assert!(s.delivered("amplitude").is_empty());
}
