use super::*;

#[test]
fn only_a_short_topic_partition_offset_is_taken_as_a_held_source() {
    assert!(is_source("events.raw/3/17"));
    assert!(is_source("a/b/0/1"));
    assert!(!is_source("events.raw/x/17"));
    assert!(!is_source("/3/17"));
    assert!(!is_source("17"));
    assert!(!is_source(&format!("{}/0/1", "t".repeat(300))));
}

const P: InputPartition = InputPartition {
    topic: 1,
    partition: 0,
};

fn waiting(offset: i64, users: &[&str], held_at_ms: i64) -> Waiting {
    Waiting {
        input: P,
        assignment: 7,
        seq: offset as u32,
        offset,
        key: None,
        value: b"{}".to_vec(),
        headers: None,
        timestamp: None,
        destinations: vec![0],
        held_at_ms,
        users: users.iter().map(|u| (*u).into()).collect(),
        resolution: None,
    }
}

fn offsets(events: &[Waiting]) -> Vec<i64> {
    events.iter().map(|e| e.offset).collect()
}

#[test]
fn headers_and_identifiers_count_toward_the_memory_held() {
    let mut hold = Hold::new("hold".into(), 1_000, 512 * 1024, false);
    let mut event = waiting(1, &["u1"], 0);
    event.headers = Some(OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "big",
        value: Some(&vec![b'x'; 1 << 20][..]),
    }));
    hold.wait(event);
    assert!(hold.full(), "1 MiB of headers held within 512 KiB");
    let mut hold = Hold::new("hold".into(), 1_000, 512 * 1024, false);
    hold.wait(waiting(1, &[&"u".repeat(600 * 1024)], 0));
    assert!(hold.full(), "a 600 KiB identifier held within 512 KiB");
    // What leaves is taken off again.
    hold.consent_applied(&"u".repeat(600 * 1024));
    assert_eq!(hold.take_chosen().len(), 1);
    assert!(hold.has_room());
}

#[test]
fn a_flood_of_one_users_events_is_released_in_linear_time() {
    let mut hold = Hold::new("hold".into(), 1_000, usize::MAX, false);
    for offset in 0..50_000 {
        hold.wait(waiting(offset, &["a1"], 0));
    }
    let started = std::time::Instant::now();
    hold.consent_applied("a1");
    assert_eq!(hold.take_chosen().len(), 50_000);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "released in {:?}",
        started.elapsed()
    );
}

#[test]
fn an_identifier_with_the_most_events_waiting_is_at_the_cap() {
    let mut hold = Hold::new("hold".into(), 1_000, usize::MAX, false);
    for offset in 0..MAX_WAITING_PER_USER as i64 {
        hold.wait(waiting(offset, &["a1"], 0));
    }
    assert!(hold.at_cap(&["u1".into(), "a1".into()]));
    assert!(!hold.at_cap(&["u2".into()]));
}

#[test]
fn an_identifier_holding_a_sixteenth_of_the_memory_is_at_the_cap() {
    let one = waiting(1, &["a1"], 0).bytes();
    let mut hold = Hold::new("hold".into(), 1_000, one * 16 * 4, false);
    for offset in 0..4 {
        assert!(!hold.at_cap(&["a1".into()]));
        hold.wait(waiting(offset, &["a1"], 0));
    }
    assert!(hold.at_cap(&["a1".into()]));
    assert!(!hold.at_cap(&["u2".into()]));
    hold.consent_applied("a1");
    assert_eq!(hold.take_chosen().len(), 4);
    assert!(!hold.at_cap(&["a1".into()]));
}

#[test]
fn either_identifier_releases_the_event_once() {
    let mut hold = Hold::new("hold".into(), 1_000, 1 << 20, false);
    hold.wait(waiting(1, &["u1", "a1"], 0));
    hold.wait(waiting(2, &["u2"], 0));
    hold.consent_applied("a1");
    hold.consent_applied("u1");
    assert_eq!(offsets(&hold.take_chosen()), [1]);
    assert!(hold.take_chosen().is_empty());
    hold.consent_applied("nobody");
    assert!(hold.take_chosen().is_empty());
}

#[test]
fn a_reused_slot_is_not_released_by_its_former_user() {
    let mut hold = Hold::new("hold".into(), 1_000, 1 << 20, false);
    hold.wait(waiting(1, &["u1"], 0));
    assert_eq!(offsets(&hold.take_expired(5_000)), [1]);
    hold.wait(waiting(2, &["u2"], 5_000));
    hold.consent_applied("u1");
    assert!(
        hold.take_chosen().is_empty(),
        "u1's choice must not release u2's event"
    );
}

#[test]
fn expiry_takes_only_events_older_than_max_age() {
    let mut hold = Hold::new("hold".into(), 1_000, 1 << 20, false);
    hold.wait(waiting(1, &["u1"], 0));
    hold.wait(waiting(2, &["u2"], 900));
    assert_eq!(offsets(&hold.take_expired(1_500)), [1]);
}

#[test]
fn memory_bound_is_reported() {
    let one = waiting(1, &["u1"], 0).bytes();
    let mut hold = Hold::new("hold".into(), 1_000, one + one / 2, false);
    hold.wait(waiting(1, &["u1"], 0));
    assert!(!hold.full());
    hold.wait(waiting(2, &["u2"], 0));
    assert!(hold.full());
    hold.forget(P, 2);
    assert!(!hold.full());
    assert!(!hold.has_room());
    hold.retain_assigned(|_| Some(8));
    assert!(hold.has_room());
}

#[test]
fn in_order_an_event_resolved_behind_a_waiting_one_waits_for_it() {
    let mut hold = Hold::new("hold".into(), 1_000, 1 << 20, true);
    hold.wait(waiting(1, &["u1"], 0));
    hold.wait(waiting(2, &["u2"], 500));
    assert!(hold.must_wait_behind(P));
    hold.consent_applied("u2");
    assert!(
        hold.take_chosen().is_empty(),
        "u2's event waits behind u1's"
    );
    // u1's event expires: both go, in order.
    let events = hold.take_expired(1_200);
    assert_eq!(offsets(&events), [1, 2]);
    assert_eq!(events[0].resolution, Some(Resolution::Expired));
    assert_eq!(events[1].resolution, Some(Resolution::Released));
    assert!(!hold.must_wait_behind(P));
}

#[test]
fn at_least_once_resolves_events_in_any_order() {
    let mut hold = Hold::new("hold".into(), 1_000, 1 << 20, false);
    hold.wait(waiting(1, &["u1"], 0));
    hold.wait(waiting(2, &["u2"], 0));
    assert!(!hold.must_wait_behind(P));
    hold.consent_applied("u2");
    assert_eq!(offsets(&hold.take_chosen()), [2]);
}
