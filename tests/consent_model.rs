//! The consent model, end to end: protobuf consent states (`consent.format`), CMP category
//! IDs (`[consent.aliases]`), RudderStack's `context.consentManagement`, and channel
//! subscriptions (`channel`).

mod common;

use common::*;
use consent_enforcer::proto;
use prost::Message;

fn analytics_and_ads() -> Vec<Destination> {
    vec![
        Destination::new("amplitude", &["analytics"]).integration_names(&["Amplitude"]),
        Destination::new("ads", &["advertising"]).integration_names(&["Google Ads"]),
    ]
}

fn protobuf_state(granted: &[(&str, bool)], updated_at_ms: i64) -> Vec<u8> {
    proto::ConsentState {
        category_preferences: granted.iter().map(|(c, g)| (c.to_string(), *g)).collect(),
        updated_at_ms: Some(updated_at_ms),
        ..Default::default()
    }
    .encode_to_vec()
}

fn consent_record(user: &str, value: Vec<u8>, content_type: Option<&str>) -> Record {
    Record {
        key: Some(user.as_bytes().to_vec()),
        value: Some(value),
        headers: content_type
            .map(|t| vec![("content-type".to_owned(), Some(t.as_bytes().to_vec()))])
            .unwrap_or_default(),
        ..Record::default()
    }
}

fn dropped(enforcer: &Enforcer, destination: &str, reason: &str) -> f64 {
    enforcer.metric(&format!(
        r#"consent_enforcer_events_dropped_total{{destination="{destination}",reason="{reason}"}}"#
    ))
}

#[test]
fn protobuf_consent_states_decide_like_json_ones_and_malformed_ones_fail_closed() {
    let mut s = Scenario::new("protobuf", analytics_and_ads());
    s.consent_extra = "format = \"protobuf\"".to_owned();
    let at = now_ms() - 60_000;
    produce(
        &s.consent,
        &[
            consent_record(
                "u1",
                protobuf_state(&[("analytics", true), ("advertising", false)], at),
                None,
            ),
            consent_record("u2", protobuf_state(&[("advertising", true)], at), None),
            // u3 granted, then a record that is no protobuf: failed closed.
            consent_record("u3", protobuf_state(&[("analytics", true)], at), None),
            consent_record("u3", b"\xff\xff\xff".to_vec(), None),
            // A JSON record under format = "protobuf" is not protobuf either.
            consent_record(
                "u4",
                consent(&["analytics"], &[], "2026-11-22T10:00:00Z").into_bytes(),
                None,
            ),
        ],
    );
    let enforcer = s.start_ready();
    s.send_events(&[
        ("u1", &track("u1", "m1")),
        ("u2", &track("u2", "m2")),
        ("u3", &track("u3", "m3")),
        ("u4", &track("u4", "m4")),
    ]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert_eq!(message_ids(&s.delivered("ads")), ["m2"]);
    assert_eq!(
        enforcer
            .metric(r#"consent_enforcer_consent_records_rejected_total{reason="not_protobuf"}"#),
        2.0
    );
}

#[test]
fn auto_format_reads_the_content_type_header_else_the_first_byte() {
    let mut s = Scenario::new("auto-format", analytics_and_ads());
    s.consent_extra = "format = \"auto\"".to_owned();
    let at = now_ms() - 60_000;
    let json = consent(&["analytics"], &["advertising"], "2026-11-22T10:00:00Z");
    produce(
        &s.consent,
        &[
            consent_record("json-sniffed", json.clone().into_bytes(), None),
            consent_record(
                "json-labelled",
                json.into_bytes(),
                Some("application/json; charset=utf-8"),
            ),
            consent_record(
                "pb-sniffed",
                protobuf_state(&[("analytics", true)], at),
                None,
            ),
            consent_record(
                "pb-labelled",
                protobuf_state(&[("analytics", true)], at),
                Some("application/x-protobuf"),
            ),
            // Labelled protobuf but JSON inside: not protobuf, failed closed.
            consent_record(
                "mislabelled",
                consent(&["analytics"], &[], "2026-11-22T10:00:00Z").into_bytes(),
                Some("application/x-protobuf"),
            ),
        ],
    );
    let enforcer = s.start_ready();
    let users = [
        "json-sniffed",
        "json-labelled",
        "pb-sniffed",
        "pb-labelled",
        "mislabelled",
    ];
    let events: Vec<(String, String)> = users
        .iter()
        .map(|u| (u.to_string(), track(u, &format!("m-{u}"))))
        .collect();
    let events: Vec<(&str, &str)> = events
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    s.send_events(&events);
    s.wait_processed();
    let mut delivered = message_ids(&s.delivered("amplitude"));
    delivered.sort();
    assert_eq!(
        delivered,
        [
            "m-json-labelled",
            "m-json-sniffed",
            "m-pb-labelled",
            "m-pb-sniffed"
        ]
    );
    assert!(s.delivered("ads").is_empty());
    assert_eq!(
        enforcer
            .metric(r#"consent_enforcer_consent_records_rejected_total{reason="not_protobuf"}"#),
        1.0
    );
}

#[test]
fn cmp_ids_map_to_categories_in_states_and_stamps_and_unknown_ids_are_counted() {
    let mut s = Scenario::new("aliases", analytics_and_ads());
    s.consent_extra =
        "[consent.aliases]\nC0002 = \"analytics\"\nC0004 = \"advertising\"".to_owned();
    // OneTrust-style state: analytics granted by its ID, advertising denied by its ID.
    s.send_consent(
        "u1",
        r#"{"categoryPreferences":{"C0001":true,"C0002":true,"C0004":false},"updatedAt":"2026-11-22T10:00:00Z"}"#,
    );
    // A name and an alias of one category that disagree: not granted.
    s.send_consent(
        "u2",
        r#"{"categoryPreferences":{"C0002":true,"analytics":false,"C0004":true},"updatedAt":"2026-11-22T10:00:00Z"}"#,
    );
    let enforcer = s.start_ready();
    let stamped = r#"{"type":"track","anonymousId":"anon-1","messageId":"m3","context":{"consent":{"categoryPreferences":{"C0002":true,"C0099":true}}}}"#;
    s.send_events(&[
        ("u1", &track("u1", "m1")),
        ("u2", &track("u2", "m2")),
        ("anon-1", stamped),
    ]);
    s.wait_processed();
    let mut amplitude = message_ids(&s.delivered("amplitude"));
    amplitude.sort();
    assert_eq!(amplitude, ["m1", "m3"]);
    assert_eq!(message_ids(&s.delivered("ads")), ["m2"]);
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_unknown_consent_names_total{source="state"}"#),
        1.0
    );
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_unknown_consent_names_total{source="event"}"#),
        1.0
    );
}

#[test]
fn a_rudderstack_consent_management_stamp_is_one_more_source_that_must_grant() {
    let mut s = Scenario::new("rudderstack", analytics_and_ads());
    s.consent_extra =
        "[consent.aliases]\nC0002 = \"analytics\"\nC0004 = \"advertising\"".to_owned();
    // u1's stored state grants both; the event's stamp allows only analytics.
    s.send_consent(
        "u1",
        &consent(&["analytics", "advertising"], &[], "2026-11-22T10:00:00Z"),
    );
    let enforcer = s.start_ready();
    let stamped = |user: &str, id: &str, allowed: &str, denied: &str| {
        format!(
            r#"{{"type":"track","userId":"{user}","messageId":"{id}","context":{{"consentManagement":{{"provider":"oneTrust","resolutionStrategy":"and","allowedConsentIds":{allowed},"deniedConsentIds":{denied}}}}}}}"#
        )
    };
    let e1 = stamped("u1", "m1", r#"["C0002"]"#, r#"["C0004"]"#);
    // No stored state: the stamp alone decides; a denied ID beats an allowed one.
    let e2 = stamped("u2", "m2", r#"["C0002","C0004"]"#, r#"["C0004"]"#);
    // Allowed, but the stored state of u3 (none granted) must grant too.
    let e3 = stamped("u3", "m3", r#"["C0002","C0004"]"#, "[]");
    s.send_consent("u3", &consent(&[], &["analytics"], "2026-11-22T10:00:00Z"));
    s.send_events(&[("u1", &e1), ("u2", &e2), ("u3", &e3)]);
    s.wait_processed();
    let mut amplitude = message_ids(&s.delivered("amplitude"));
    amplitude.sort();
    assert_eq!(amplitude, ["m1", "m2"]);
    assert!(s.delivered("ads").is_empty());
    assert_eq!(dropped(&enforcer, "ads", "denied"), 3.0);
    assert_eq!(dropped(&enforcer, "amplitude", "denied"), 1.0);
}

#[test]
fn a_channel_destination_receives_only_users_subscribed_on_its_channel() {
    let mut s = Scenario::new(
        "channels",
        vec![
            Destination::new("newsletter", &[]).channel("email"),
            Destination::new("promo-sms", &["advertising"]).channel("sms"),
        ],
    );
    s.consent_extra = "when_missing = \"allow\"".to_owned();
    s.send_consent(
        "subscribed",
        r#"{"categoryPreferences":{"advertising":true},"subscriptions":{"email":"subscribed","sms":"SUBSCRIBED"},"updatedAt":"2026-11-22T10:00:00Z"}"#,
    );
    s.send_consent(
        "unsubscribed",
        r#"{"categoryPreferences":{"advertising":true},"subscriptions":{"email":"unsubscribed","sms":"did_not_subscribe"},"updatedAt":"2026-11-22T10:00:00Z"}"#,
    );
    s.send_consent(
        "no-ads",
        r#"{"categoryPreferences":{"advertising":false},"subscriptions":{"email":"subscribed","sms":"subscribed"},"updatedAt":"2026-11-22T10:00:00Z"}"#,
    );
    let enforcer = s.start_ready();
    // A stamp granting advertising says nothing about subscriptions.
    let stamped = r#"{"type":"track","userId":"nobody","messageId":"m-nobody","context":{"consent":{"categoryPreferences":{"advertising":true}}}}"#;
    s.send_events(&[
        ("subscribed", &track("subscribed", "m-subscribed")),
        ("unsubscribed", &track("unsubscribed", "m-unsubscribed")),
        ("no-ads", &track("no-ads", "m-no-ads")),
        ("nobody", stamped),
    ]);
    s.wait_processed();
    let mut newsletter = message_ids(&s.delivered("newsletter"));
    newsletter.sort();
    assert_eq!(newsletter, ["m-no-ads", "m-subscribed"]);
    assert_eq!(message_ids(&s.delivered("promo-sms")), ["m-subscribed"]);
    assert_eq!(dropped(&enforcer, "newsletter", "unsubscribed"), 2.0);
    assert_eq!(dropped(&enforcer, "promo-sms", "unsubscribed"), 2.0);
    assert_eq!(dropped(&enforcer, "promo-sms", "denied"), 1.0);

    // Unsubscribing takes effect for the events after it.
    s.send_consent(
        "subscribed",
        &format!(
            r#"{{"categoryPreferences":{{"advertising":true}},"subscriptions":{{"email":"unsubscribed","sms":"subscribed"}},"updatedAt":"{}"}}"#,
            rfc3339_from_now(0)
        ),
    );
    next_millisecond();
    s.send_events(&[("subscribed", &track("subscribed", "m-after"))]);
    s.wait_processed();
    assert!(!message_ids(&s.delivered("newsletter")).contains(&"m-after".to_owned()));
    assert!(message_ids(&s.delivered("promo-sms")).contains(&"m-after".to_owned()));
}

const JURISDICTIONS: &str = r#"
[[jurisdiction]]
name = "EU"
match = ["DE", "FR"]
model = "opt-in"

[[jurisdiction]]
name = "California"
match = ["US-CA"]
model = "opt-out"
granted_by_default = ["analytics", "advertising"]
gpc_denies = ["advertising"]
"#;

fn located(user: &str, id: &str, context: &str) -> String {
    format!(r#"{{"type":"track","userId":"{user}","messageId":"{id}","context":{context}}}"#)
}

#[test]
fn jurisdictions_give_opt_in_and_opt_out_defaults_and_gpc_denies_what_it_lists() {
    let mut s = Scenario::new("jurisdictions", analytics_and_ads());
    s.consent_extra = "default_jurisdiction = \"EU\"".to_owned();
    s.extra = JURISDICTIONS.to_owned();
    s.send_consent(
        "ca-chose",
        r#"{"categoryPreferences":{"analytics":false,"advertising":true},"jurisdiction":"US-CA","updatedAt":"2026-11-22T10:00:00Z"}"#,
    );
    // Chosen under the EU: its law, not the event's location, decides GPC.
    s.send_consent(
        "eu-granted",
        r#"{"categoryPreferences":{"analytics":true,"advertising":true},"jurisdiction":"DE","updatedAt":"2026-11-22T10:00:00Z"}"#,
    );
    s.send_consent(
        "gpc-state",
        r#"{"categoryPreferences":{"analytics":true,"advertising":true},"gpc":true,"updatedAt":"2026-11-22T10:00:00Z"}"#,
    );
    let enforcer = s.start_ready();
    let california = r#""location":{"country":"United States","region":"California"}"#;
    let events = [
        (
            "ca-none",
            located("ca-none", "m1", &format!("{{{california}}}")),
        ),
        (
            "ca-gpc",
            located("ca-gpc", "m2", &format!(r#"{{"gpc":true,{california}}}"#)),
        ),
        (
            "de-none",
            located("de-none", "m3", r#"{"location":{"country":"Germany"}}"#),
        ),
        ("nowhere", located("nowhere", "m4", "{}")),
        (
            "ca-chose",
            located("ca-chose", "m5", &format!("{{{california}}}")),
        ),
        (
            "eu-granted",
            located(
                "eu-granted",
                "m6",
                &format!(r#"{{"gpc":true,{california}}}"#),
            ),
        ),
        (
            "gpc-state",
            located("gpc-state", "m7", &format!("{{{california}}}")),
        ),
    ];
    let events: Vec<(&str, &str)> = events.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.send_events(&events);
    s.wait_processed();
    let sorted = |destination: &str| {
        let mut ids = message_ids(&s.delivered(destination));
        ids.sort();
        ids
    };
    assert_eq!(sorted("amplitude"), ["m1", "m2", "m6", "m7"]);
    assert_eq!(sorted("ads"), ["m1", "m5", "m6"]);
    // No choice and no default: no_consent (m3, m4 to both; m2 to ads, withheld by GPC).
    assert_eq!(dropped(&enforcer, "amplitude", "no_consent"), 2.0);
    assert_eq!(dropped(&enforcer, "ads", "no_consent"), 3.0);
    // A choice the user made, or GPC over a choice: denied (m5; m7).
    assert_eq!(dropped(&enforcer, "amplitude", "denied"), 1.0);
    assert_eq!(dropped(&enforcer, "ads", "denied"), 1.0);
}

fn preference_event(user: &str, id: &str, timestamp: &str, analytics: bool) -> String {
    format!(
        r#"{{"type":"track","event":"Segment Consent Preference Updated","userId":"{user}","messageId":"{id}","timestamp":"{timestamp}","context":{{"consent":{{"categoryPreferences":{{"analytics":{analytics},"advertising":false}}}}}}}}"#
    )
}

/// The consent topic's records, once it has `count` of them (or after a wait).
fn consent_records(s: &Scenario, count: usize) -> Vec<Record> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let records = read_all(&s.consent);
        if records.len() >= count || std::time::Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_cmp_preference_event_is_learned_once_and_judges_the_events_after_it() {
    let mut s = Scenario::new("learn", analytics_and_ads());
    s.consent_extra = "learn_from_events = true".to_owned();
    s.send_consent("u1", &consent(&[], &["analytics"], "2026-11-22T10:00:00Z"));
    let enforcer = s.start_ready();
    let at = rfc3339_from_now(0);
    s.send_events(&[("u1", &preference_event("u1", "p1", &at, true))]);
    s.wait_processed();
    let records = consent_records(&s, 2);
    assert_eq!(records.len(), 2, "{}", enforcer.logs());
    let learned = &records[1];
    assert_eq!(learned.key_str(), "u1");
    assert_eq!(
        learned.header("consent-enforcer-learned").as_deref(),
        Some("true")
    );
    let value: serde_json::Value =
        serde_json::from_slice(learned.value.as_deref().unwrap()).unwrap();
    assert_eq!(value["categoryPreferences"]["analytics"], true);
    assert_eq!(
        consent_enforcer::consent::record::parse_rfc3339_ms(value["updatedAt"].as_str().unwrap()),
        consent_enforcer::consent::record::parse_rfc3339_ms(&at)
    );
    // The preference event itself is routed like any other (judged before it was learned).
    assert!(s.delivered("amplitude").is_empty());
    // An event written after the learned state was acknowledged is judged with it.
    next_millisecond();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    // The same choice again, or an older one, is not written.
    next_millisecond();
    s.send_events(&[
        (
            "u1",
            &preference_event("u1", "p2", &rfc3339_from_now(0), true),
        ),
        (
            "u1",
            &preference_event("u1", "p3", "2026-11-22T09:00:00Z", false),
        ),
    ]);
    s.wait_processed();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(read_all(&s.consent).len(), 2);
    assert_eq!(
        enforcer.metric("consent_enforcer_consent_learned_total"),
        1.0
    );
}
