use super::*;

fn delivery() -> Delivery {
    let mut producer = rdkafka::ClientConfig::new();
    // Creating a producer connects lazily: nothing here talks to a broker.
    producer.set("bootstrap.servers", "127.0.0.1:1");
    Delivery::new(
        &producer,
        Topics {
            inputs: Arc::new(Assignments::new(vec!["events".to_owned()])),
            destinations: vec!["out".to_owned()],
            dead_letter: "dead".to_owned(),
            consent: "consent".to_owned(),
            hold: None,
        },
        Settings {
            guarantee: Guarantee::AtLeastOnce,
            transaction_interval: Duration::from_millis(100),
            transaction_max_events: 100,
            startup_timeout: Duration::from_secs(1),
            transaction_timeout: Duration::from_secs(60),
            init_deadline: Instant::now() + Duration::from_secs(1),
        },
        EventMetrics::register(["out"]),
        metrics::counter!("test_republished"),
        Arc::new(AtomicBool::new(false)),
        Arc::default(),
    )
    .expect("a producer is created without a broker")
}

#[test]
fn a_commit_waits_for_event_writes_only_not_for_re_published_consent_states() {
    // The broker at 127.0.0.1:1 never answers: a write sent there stays in flight, as a
    // re-publish does when the consent topic is readable but not writable.
    let delivery = delivery();
    let record = BaseRecord::with_opaque_to("consent", Tag::republish().encode())
        .partition(0)
        .key(b"user".as_slice())
        .payload(b"{}".as_slice());
    delivery.send(record).expect("queued");
    // What a transaction's commit and a revocation wait for (drain_writes without
    // re-publishes): nothing is pending.
    assert!(delivery.drain_events(Duration::from_millis(50)));
    // A stop's drain still waits for it.
    assert!(!delivery.drain(None, Duration::from_millis(50)));
}
