//! JSON and protobuf: one state in either encoding reads as the same state; `auto` picks the
//! encoding by header, else by the first byte; aliases and subscriptions read alike.

use std::collections::HashMap;

use prost::Message;

use super::*;
use crate::proto;

fn vocabulary() -> Vocabulary {
    let mut vocabulary = Vocabulary::default();
    vocabulary.intern_category("analytics");
    vocabulary.intern_category("advertising");
    vocabulary.intern_category("functional");
    vocabulary.intern_channel("email");
    vocabulary.intern_channel("sms");
    vocabulary.add_alias("C0002", "analytics");
    vocabulary.add_alias("C0004", "advertising");
    vocabulary.add_alias("C0005", "marketing");
    vocabulary
}

/// A state as a CMP would write it, before encoding.
#[derive(Debug)]
struct Written {
    preferences: Vec<(&'static str, bool)>,
    subscriptions: Vec<(&'static str, &'static str)>,
    updated_at_ms: Option<i64>,
}

const NAMES: [&str; 7] = [
    "analytics",
    "advertising",
    "functional",
    "C0002",
    "C0004",
    "C0005",
    "unknown",
];
const CHANNELS: [&str; 3] = ["email", "sms", "push"];
const STATUSES: [(&str, proto::SubscriptionStatus); 3] = [
    ("subscribed", proto::SubscriptionStatus::Subscribed),
    ("unsubscribed", proto::SubscriptionStatus::Unsubscribed),
    (
        "did_not_subscribe",
        proto::SubscriptionStatus::DidNotSubscribe,
    ),
];

fn generated(mut seed: u64) -> Written {
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut preferences = Vec::new();
    for name in NAMES {
        if next(3) > 0 {
            preferences.push((name, next(2) == 0));
        }
    }
    let mut subscriptions = Vec::new();
    for channel in CHANNELS {
        if next(2) == 0 {
            subscriptions.push((channel, STATUSES[next(3) as usize].0));
        }
    }
    let updated_at_ms = (next(4) > 0).then(|| 1_795_341_600_000 + next(10_000) as i64);
    Written {
        preferences,
        subscriptions,
        updated_at_ms,
    }
}

impl Written {
    fn json(&self) -> Vec<u8> {
        let preferences: serde_json::Map<String, serde_json::Value> = self
            .preferences
            .iter()
            .map(|(name, granted)| (name.to_string(), (*granted).into()))
            .collect();
        let subscriptions: serde_json::Map<String, serde_json::Value> = self
            .subscriptions
            .iter()
            .map(|(channel, status)| (channel.to_string(), (*status).into()))
            .collect();
        let mut value = serde_json::json!({
            "categoryPreferences": preferences,
            "subscriptions": subscriptions,
        });
        if let Some(ms) = self.updated_at_ms {
            value["updatedAt"] = format_rfc3339_ms(ms).into();
        }
        value.to_string().into_bytes()
    }

    fn protobuf(&self) -> Vec<u8> {
        let status = |name: &str| {
            STATUSES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| *s as i32)
                .unwrap_or_default()
        };
        proto::ConsentState {
            category_preferences: self
                .preferences
                .iter()
                .map(|(name, granted)| (name.to_string(), *granted))
                .collect::<HashMap<_, _>>(),
            updated_at_ms: self.updated_at_ms,
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(channel, s)| (channel.to_string(), status(s)))
                .collect(),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

#[test]
fn json_and_protobuf_encodings_of_one_state_read_as_the_same_state() {
    let vocabulary = vocabulary();
    let mut granted_by_alias = 0;
    let mut subscribed = 0;
    for seed in 0..2_000 {
        let written = generated(seed);
        let json = read_value(Some(&written.json()), Encoding::Json, 7, &vocabulary);
        let protobuf = read_value(
            Some(&written.protobuf()),
            Encoding::Protobuf,
            7,
            &vocabulary,
        );
        assert_eq!(json, protobuf, "{written:?}");
        let Ok(ConsentUpdate::Set(state)) = json.update else {
            panic!("{written:?} read as {json:?}");
        };
        granted_by_alias += u32::from(
            state.granted.contains(0) && !written.preferences.contains(&("analytics", true)),
        );
        subscribed += u32::from(state.granted.contains(3));
    }
    // The generated states exercise what the test claims.
    assert!(granted_by_alias > 50 && subscribed > 50);
}

#[test]
fn a_category_named_twice_is_granted_only_if_every_name_grants_it() {
    let vocabulary = vocabulary();
    let read = |text: &str| read_value(Some(text.as_bytes()), Encoding::Json, 7, &vocabulary);
    let bits = |text: &str| match read(text).update {
        Ok(ConsentUpdate::Set(state)) => state.granted.bits(),
        other => panic!("{other:?}"),
    };
    assert_eq!(bits(r#"{"categoryPreferences":{"C0002":true}}"#), 0b1);
    assert_eq!(
        bits(r#"{"categoryPreferences":{"C0002":true,"analytics":false}}"#),
        0
    );
    assert_eq!(
        bits(r#"{"categoryPreferences":{"analytics":true,"C0002":true}}"#),
        0b1
    );
    // The same name twice is a duplicate key, as before.
    assert_eq!(
        read(r#"{"categoryPreferences":{"C0002":true,"C0002":true}}"#).update,
        Err(Rejection::DuplicateKey)
    );
    // An alias of a category no destination needs is known, and grants nothing.
    let known = read(r#"{"categoryPreferences":{"C0005":true,"C0099":true,"x":1}}"#);
    assert_eq!(known.unknown_names, 2);
}

#[test]
fn only_the_status_subscribed_subscribes() {
    let vocabulary = vocabulary();
    let bits = |subscriptions: &str| {
        let text = format!(r#"{{"categoryPreferences":{{}},"subscriptions":{subscriptions}}}"#);
        match parse_value(Some(text.as_bytes()), 7, &vocabulary) {
            Ok(ConsentUpdate::Set(state)) => state.granted.bits() >> 3,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(bits(r#"{"email":"subscribed","sms":"unsubscribed"}"#), 0b01);
    assert_eq!(bits(r#"{"email":"SUBSCRIBED","sms":"subscribed"}"#), 0b11);
    assert_eq!(bits(r#"{"email":"did_not_subscribe","sms":true}"#), 0);
    assert_eq!(bits(r#""subscribed""#), 0);
    assert_eq!(
        parse_value(
            Some(
                br#"{"categoryPreferences":{},"subscriptions":{"email":"subscribed","email":"x"}}"#
            ),
            7,
            &vocabulary
        ),
        Err(Rejection::DuplicateKey)
    );
}

#[test]
fn malformed_protobuf_is_rejected_as_not_protobuf() {
    let vocabulary = vocabulary();
    for bytes in [
        &b"\xff\xff\xff"[..],
        &[0],
        &[0x0a, 0x05, 0x0a],
        b"{\"categoryPreferences\":{}}",
    ] {
        assert_eq!(
            read_value(Some(bytes), Encoding::Protobuf, 7, &vocabulary).update,
            Err(Rejection::NotProtobuf),
            "{bytes:?}"
        );
    }
    // A null value is a tombstone in either encoding; an empty one is a state granting nothing.
    assert_eq!(
        read_value(None, Encoding::Protobuf, 7, &vocabulary).update,
        Ok(ConsentUpdate::Remove)
    );
    assert_eq!(
        read_value(Some(&[]), Encoding::Protobuf, 7, &vocabulary).update,
        Ok(ConsentUpdate::Set(ConsentState {
            granted: CategorySet::EMPTY,
            updated_at_ms: 7
        }))
    );
}

#[test]
fn auto_reads_the_content_type_header_else_the_first_byte() {
    let auto = ConsentFormat::Auto;
    let json = Some(&b" {}"[..]);
    let protobuf = Some(&b"\x0a\x02"[..]);
    assert_eq!(Encoding::of(auto, None, json), Encoding::Json);
    assert_eq!(Encoding::of(auto, None, protobuf), Encoding::Protobuf);
    assert_eq!(
        Encoding::of(auto, Some(b"application/x-protobuf"), json),
        Encoding::Protobuf
    );
    assert_eq!(
        Encoding::of(auto, Some(b"Application/JSON; charset=utf-8"), protobuf),
        Encoding::Json
    );
    assert_eq!(
        Encoding::of(auto, Some(b"text/plain"), protobuf),
        Encoding::Protobuf
    );
    // The configured format wins over any header.
    assert_eq!(
        Encoding::of(
            ConsentFormat::Json,
            Some(b"application/x-protobuf"),
            protobuf
        ),
        Encoding::Json
    );
    assert_eq!(
        Encoding::of(ConsentFormat::Protobuf, Some(b"application/json"), json),
        Encoding::Protobuf
    );
}

#[test]
fn a_state_encoded_as_protobuf_reads_back_as_itself_and_failed_closed_stays_failed() {
    let vocabulary = vocabulary();
    let state = ConsentState {
        granted: CategorySet::from_bits(0b1_0101),
        updated_at_ms: 1_795_341_600_123,
    };
    let bytes = encode_protobuf(&state, &vocabulary);
    assert_eq!(
        read_value(Some(&bytes), Encoding::Protobuf, 0, &vocabulary).update,
        Ok(ConsentUpdate::Set(state))
    );
    let json = encode_value(&state, &vocabulary);
    assert_eq!(
        read_value(Some(&json), Encoding::Json, 0, &vocabulary).update,
        Ok(ConsentUpdate::Set(state))
    );
    let failed = encode_protobuf(&ConsentState::FAILED_CLOSED, &vocabulary);
    assert_eq!(
        read_value(Some(&failed), Encoding::Protobuf, 0, &vocabulary).update,
        Err(Rejection::NotProtobuf)
    );
}
