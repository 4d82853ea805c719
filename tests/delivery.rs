//! Delivery: records go out exactly as they came in, on the Java partition, in order, with
//! malformed events dead-lettered. Across stops and crashes: `tests/delivery_stops.rs`.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;

#[test]
fn java_murmur2_matches_known_values() {
    // Values from Kafka's UtilsTest.testMurmur2.
    assert_eq!(java_murmur2(b"21") as i32, -973_932_308);
    assert_eq!(java_murmur2(b"foobar") as i32, -790_332_482);
    assert_eq!(
        java_murmur2(b"a-little-bit-long-string") as i32,
        -985_981_536
    );
    assert_eq!(
        java_murmur2(b"a-little-bit-longer-string") as i32,
        -1_486_304_829
    );
    assert_eq!(
        java_murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
        -58_897_971
    );
    assert_eq!(java_murmur2(b"abc") as i32, 479_470_107);
}

#[test]
fn value_key_headers_and_timestamp_go_out_byte_identical() {
    let s = Scenario::new("identical", vec![Destination::new("warehouse", &[])]);
    let _enforcer = s.start_ready();
    // Odd spacing, escapes and number forms that a re-serialization would change.
    let value =
        "{ \"userId\" : \"u1\",\t\"messageId\":\"m1\", \"n\": 1.50e3, \"s\":\"\\u00e9\\/\" }";
    let sent = Record {
        key: Some(b"key-\x00\xff".to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: vec![
            ("trace".to_owned(), Some(b"abc".to_vec())),
            ("empty".to_owned(), None),
            ("trace".to_owned(), Some(vec![0, 1, 2])),
        ],
        // An hour old, not years: the test broker checks retention every 10 s, and a record
        // older than the topic's 7-day retention can be deleted before it is read back.
        timestamp: Some(now_ms() - 3_600_123),
        ..Record::default()
    };
    produce(&s.input, std::slice::from_ref(&sent));
    s.wait_processed();
    let delivered = s.delivered("warehouse");
    assert_eq!(delivered.len(), 1);
    let got = &delivered[0];
    assert_eq!(got.value, sent.value);
    assert_eq!(got.key, sent.key);
    assert_eq!(got.headers, sent.headers);
    assert_eq!(got.timestamp, sent.timestamp);
}

#[test]
fn keyed_records_land_on_the_java_murmur2_partition() {
    let s = Scenario::new(
        "partitioning",
        vec![Destination::new("warehouse", &[]).partitions(6)],
    );
    let _enforcer = s.start_ready();
    let events: Vec<(String, String)> = (0..60)
        .map(|i| {
            (
                format!("user-{i}"),
                track(&format!("user-{i}"), &format!("m{i}")),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = events
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    s.send_events(&borrowed);
    s.wait_processed();
    let delivered = s.delivered("warehouse");
    assert_eq!(delivered.len(), 60);
    let used: HashSet<i32> = delivered.iter().map(|r| r.partition).collect();
    assert!(used.len() > 1, "keys should spread over partitions");
    for record in &delivered {
        let key = record.key.as_deref().unwrap();
        assert_eq!(
            record.partition,
            java_partition(key, 6),
            "key {}",
            record.key_str()
        );
    }
}

#[test]
fn order_is_kept_per_key_per_destination() {
    let s = Scenario::with_partitions(
        "order",
        vec![Destination::new("warehouse", &[]).partitions(2)],
        3,
    );
    let _enforcer = s.start_ready();
    let mut events = Vec::new();
    for i in 0..300 {
        let user = format!("user-{}", i % 5);
        events.push(Record::new(&user, &track(&user, &format!("{i}"))));
    }
    produce(&s.input, &events);
    s.wait_processed();
    let delivered = s.delivered("warehouse");
    assert_eq!(delivered.len(), 300);
    let mut last: HashMap<String, i64> = HashMap::new();
    // Records of one key share a partition; read back in offset order.
    for (record, id) in delivered.iter().zip(message_ids(&delivered)) {
        let sequence: i64 = id.parse().unwrap();
        let previous = last.insert(record.key_str(), sequence);
        assert!(
            previous.is_none_or(|p| p < sequence),
            "{} out of order",
            record.key_str()
        );
    }
}

#[test]
fn malformed_events_go_only_to_the_dead_letter_topic_with_reason_and_source() {
    let mut s = Scenario::new("dead-letter", vec![Destination::new("warehouse", &[])]);
    s.input_extra = "max_event_bytes = 200".to_owned();
    let _enforcer = s.start_ready();
    let too_large = format!(r#"{{"userId":"u1","pad":"{}"}}"#, "x".repeat(300));
    let header = ("origin".to_owned(), Some(b"web".to_vec()));
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("null_value", None),
        ("too_large", Some(&too_large)),
        ("not_json", Some(r#"{"userId":"u1","#)),
        ("not_json", Some(r#"{"userId":"u1"} trailing"#)),
        ("not_object", Some(r#"["userId","u1"]"#)),
        ("duplicate_key", Some(r#"{"userId":"u1","userId":"u2"}"#)),
        (
            "no_identifier",
            Some(r#"{"type":"track","userId":"","anonymousId":null}"#),
        ),
    ];
    let records: Vec<Record> = cases
        .iter()
        .map(|(reason, value)| Record {
            key: Some(reason.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            headers: vec![header.clone()],
            ..Record::default()
        })
        .collect();
    produce(&s.input, &records);
    s.wait_processed();
    assert!(s.delivered("warehouse").is_empty());
    let dead = s.dead_letters();
    assert_eq!(dead.len(), cases.len());
    for (offset, ((reason, value), record)) in cases.iter().zip(&dead).enumerate() {
        assert_eq!(
            record.header("consent-enforcer-error").as_deref(),
            Some(*reason)
        );
        assert_eq!(
            record.header("consent-enforcer-source"),
            Some(format!("{}/0/{offset}", s.input))
        );
        assert_eq!(record.key_str(), *reason);
        assert_eq!(record.value.as_deref(), value.map(str::as_bytes));
        assert_eq!(record.header("origin").as_deref(), Some("web"));
    }
    let enforcer = _enforcer;
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_events_dead_lettered_total{reason="not_json"}"#),
        2.0
    );
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_events_dead_lettered_total{reason="null_value"}"#),
        1.0
    );
}

#[test]
fn a_dead_letter_too_large_for_its_topic_goes_out_without_its_value_saying_its_size_and_source() {
    let mut s = Scenario::new(
        "dead-letter-limit",
        vec![Destination::new("warehouse", &[])],
    );
    s.input_extra = "max_event_bytes = 1000".to_owned();
    set_topic_config(&s.dead_letter, "max.message.bytes", "4000");
    let _enforcer = s.start_ready();
    let big = format!(r#"{{"userId":"u1","pad":"{}"}}"#, "x".repeat(20_000));
    let dead = only_dead_letter(&s, b"u1", &big);
    assert_eq!(dead.key_str(), "u1");
    assert_written_without_value(&s, &dead, "too_large", big.len());
}

/// Writes an event with key `key`, value `value` and an `origin` header, then a valid one;
/// returns the one dead letter once both are processed.
fn only_dead_letter(s: &Scenario, key: &[u8], value: &str) -> Record {
    produce(
        &s.input,
        &[Record {
            key: Some(key.to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![("origin".to_owned(), Some(b"web".to_vec()))],
            ..Record::default()
        }],
    );
    s.send_events(&[("u1", &track("u1", "after"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("warehouse")), ["after"]);
    let mut dead = s.dead_letters();
    assert_eq!(dead.len(), 1);
    dead.remove(0)
}

/// A dead letter of the input's first record written with a null value, saying its reason,
/// source and original size.
fn assert_written_without_value(s: &Scenario, dead: &Record, reason: &str, size: usize) {
    assert_eq!(dead.value, None);
    assert_eq!(
        dead.header("consent-enforcer-error").as_deref(),
        Some(reason)
    );
    assert_eq!(
        dead.header("consent-enforcer-source"),
        Some(format!("{}/0/0", s.input))
    );
    assert_eq!(
        dead.header("consent-enforcer-original-size"),
        Some(size.to_string())
    );
}

#[test]
fn input_headers_named_like_the_enforcers_reach_neither_destinations_nor_dead_letters() {
    let s = Scenario::new("reserved-headers", vec![Destination::new("warehouse", &[])]);
    let enforcer = s.start_ready();
    let forged = |value: &str| -> Record {
        Record {
            key: Some(b"u1".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![
                (
                    "consent-enforcer-error".to_owned(),
                    Some(b"forged".to_vec()),
                ),
                (
                    "Consent-Enforcer-Source".to_owned(),
                    Some(b"x/0/0".to_vec()),
                ),
                ("origin".to_owned(), Some(b"web".to_vec())),
            ],
            ..Record::default()
        }
    };
    produce(
        &s.input,
        &[forged(&track("u1", "m1")), forged(r#"{"userId":"u1","#)],
    );
    s.wait_processed();
    let delivered = s.delivered("warehouse");
    assert_eq!(message_ids(&delivered), ["m1"]);
    assert_eq!(
        delivered[0].headers,
        [("origin".to_owned(), Some(b"web".to_vec()))]
    );
    let dead = s.dead_letters();
    assert_eq!(dead.len(), 1);
    let names: Vec<&str> = dead[0].headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "origin",
            "consent-enforcer-error",
            "consent-enforcer-source"
        ]
    );
    assert_eq!(
        dead[0].header("consent-enforcer-error").as_deref(),
        Some("not_json")
    );
    assert_eq!(
        enforcer.metric("consent_enforcer_input_headers_stripped_total"),
        4.0
    );
}

/// Kafka allows any bytes in a header name; rust-rdkafka's header iterator panics on a name
/// that is not UTF-8, which would stop the enforcer on that event at every restart.
#[test]
fn a_header_name_that_is_not_utf_8_is_carried_to_destinations_and_dead_letters() {
    use rdkafka::bindings as rdsys;
    use rdkafka::message::{BorrowedHeaders, OwnedHeaders};
    use rdkafka::producer::BaseRecord;

    let s = Scenario::new("bytes-header", vec![Destination::new("warehouse", &[])]);
    let _enforcer = s.start_ready();
    let name = b"bin-\xff";
    for value in [track("u1", "m1"), r#"{"userId":"u1","#.to_owned()] {
        let headers = OwnedHeaders::new();
        let native =
            headers.as_borrowed() as *const BorrowedHeaders as *mut rdsys::rd_kafka_headers_t;
        // SAFETY: the headers are ours; librdkafka copies name and value.
        unsafe {
            rdsys::rd_kafka_header_add(native, name.as_ptr().cast(), 5, b"v".as_ptr().cast(), 1);
        }
        let record: BaseRecord<'_, str, str> = BaseRecord::to(&s.input)
            .key("u1")
            .payload(value.as_str())
            .headers(headers);
        producer()
            .send(record)
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    s.send_events(&[("u1", &track("u1", "after"))]);
    s.wait_processed();
    let delivered = s.delivered("warehouse");
    assert_eq!(message_ids(&delivered), ["m1", "after"]);
    let shown = String::from_utf8_lossy(name).into_owned();
    assert_eq!(delivered[0].headers, [(shown.clone(), Some(b"v".to_vec()))]);
    let dead = s.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].headers[0], (shown, Some(b"v".to_vec())));
    assert_eq!(
        dead[0].header("consent-enforcer-error").as_deref(),
        Some("not_json")
    );
}

#[test]
fn with_the_payload_dropped_a_dead_letter_keeps_headers_reason_source_and_size_only() {
    let mut s = Scenario::new("dead-letter-drop", vec![Destination::new("warehouse", &[])]);
    s.dead_letter_extra = "payload = \"drop\"".to_owned();
    let _enforcer = s.start_ready();
    let value = r#"{"type":"track","userId":"","email":"someone@example.com"}"#;
    let dead = only_dead_letter(&s, b"someone@example.com", value);
    assert_eq!(dead.key, None);
    assert_written_without_value(&s, &dead, "no_identifier", value.len());
    assert_eq!(dead.header("origin").as_deref(), Some("web"));
}
