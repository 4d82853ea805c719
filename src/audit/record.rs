//! The audit record: one JSON object per change (README, "Consent audit log").

use serde_json::{json, Map, Value};

use super::{Change, Snapshot};
use crate::consent::record::{encode_value, format_rfc3339_ms};
use crate::consent::suppressions::PrivacyView;
use crate::vocabulary::Vocabulary;

/// The topics the views are read from, and who writes the log.
pub(super) struct Names {
    pub consent_topic: String,
    pub privacy_topic: Option<String>,
    pub instance: String,
}

/// A change as its audit record's value.
pub(super) fn encode(change: &Change, names: &Names, vocabulary: &Vocabulary) -> Vec<u8> {
    let topic = match change.source.view {
        super::View::Consent => names.consent_topic.as_str(),
        super::View::Privacy => names.privacy_topic.as_deref().unwrap_or_default(),
    };
    let mut source = Map::new();
    source.insert("topic".into(), topic.into());
    source.insert("partition".into(), change.source.partition.into());
    source.insert("offset".into(), change.source.offset.into());
    if let Some(ms) = change.source.timestamp_ms {
        source.insert("timestamp".into(), format_rfc3339_ms(ms).into());
    }
    if let Some(message_id) = &change.source.learned {
        source.insert("learned".into(), true.into());
        if let Some(id) = message_id {
            source.insert("messageId".into(), id.as_ref().into());
        }
    }
    let mut record = Map::new();
    record.insert("user".into(), change.user.as_ref().into());
    record.insert("view".into(), change.source.view.as_str().into());
    record.insert("before".into(), snapshot(&change.before, vocabulary));
    record.insert("after".into(), snapshot(&change.after, vocabulary));
    if let Some(reason) = change.rejected {
        record.insert("rejected".into(), reason.into());
    }
    record.insert("source".into(), Value::Object(source));
    record.insert("instance".into(), names.instance.as_str().into());
    record.insert(
        "appliedAt".into(),
        format_rfc3339_ms(change.applied_at_ms).into(),
    );
    Value::Object(record).to_string().into_bytes()
}

fn snapshot(snapshot: &Snapshot, vocabulary: &Vocabulary) -> Value {
    match snapshot {
        Snapshot::Consent(None) => Value::Null,
        // The state as the consent topic carries it (a failed-closed one says so).
        Snapshot::Consent(Some(state)) => {
            serde_json::from_slice(&encode_value(state, vocabulary)).unwrap_or(Value::Null)
        }
        Snapshot::Privacy(PrivacyView {
            suppressed,
            failed_closed,
            request,
        }) => json!({
            "suppressed": suppressed,
            "failedClosed": failed_closed,
            "request": request.map(|(kind, requested_at_ms, deleted)| json!({
                "type": kind.as_str(),
                "requestedAt": format_rfc3339_ms(requested_at_ms),
                "deleted": deleted,
            })),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Source, View};
    use crate::consent::ConsentState;
    use crate::privacy::RequestType;

    fn vocabulary() -> Vocabulary {
        let config = crate::config::Config::parse(
            r#"
[kafka]
bootstrap_servers = "127.0.0.1:9"
[input]
topics = ["events"]
[consent]
topic = "consent"
[dead_letter]
topic = "dead"
[[destination]]
name = "amplitude"
topic = "dest.amplitude"
categories = ["analytics"]
"#,
            "test.toml",
        )
        .expect("a valid config");
        Vocabulary::from_config(&config)
    }

    fn names() -> Names {
        Names {
            consent_topic: "consent".into(),
            privacy_topic: Some("privacy".into()),
            instance: "enforcer-0".into(),
        }
    }

    #[test]
    fn a_privacy_change_names_its_source_and_both_views() {
        let vocabulary = vocabulary();
        let change = Change {
            user: "u1".into(),
            before: Snapshot::Privacy(PrivacyView::default()),
            after: Snapshot::Privacy(PrivacyView {
                suppressed: true,
                failed_closed: false,
                request: Some((RequestType::Suppress, 1_000, false)),
            }),
            rejected: None,
            source: Source {
                view: View::Privacy,
                partition: 2,
                offset: 7,
                timestamp_ms: Some(1_000),
                learned: None,
            },
            applied_at_ms: 2_000,
        };
        let value: Value = serde_json::from_slice(&encode(&change, &names(), &vocabulary))
            .expect("the record is JSON");
        assert_eq!(
            value,
            json!({
                "user": "u1",
                "view": "privacy",
                "before": {"suppressed": false, "failedClosed": false, "request": null},
                "after": {"suppressed": true, "failedClosed": false, "request": {
                    "type": "SUPPRESS", "requestedAt": "1970-01-01T00:00:01Z", "deleted": false}},
                "source": {"topic": "privacy", "partition": 2, "offset": 7,
                    "timestamp": "1970-01-01T00:00:01Z"},
                "instance": "enforcer-0",
                "appliedAt": "1970-01-01T00:00:02Z",
            })
        );
    }

    #[test]
    fn a_learned_consent_change_names_the_event() {
        let vocabulary = vocabulary();
        let change = Change {
            user: "u1".into(),
            before: Snapshot::Consent(None),
            after: Snapshot::Consent(Some(ConsentState::FAILED_CLOSED)),
            rejected: Some("not_json"),
            source: Source {
                view: View::Consent,
                partition: 0,
                offset: 3,
                timestamp_ms: None,
                learned: Some(Some("m-1".into())),
            },
            applied_at_ms: 0,
        };
        let value: Value = serde_json::from_slice(&encode(&change, &names(), &vocabulary))
            .expect("the record is JSON");
        assert_eq!(value["before"], Value::Null);
        assert_eq!(value["after"]["categoryPreferences"], Value::Null);
        assert_eq!(value["rejected"], "not_json");
        assert_eq!(
            value["source"],
            json!({"topic": "consent", "partition": 0, "offset": 3, "learned": true, "messageId": "m-1"})
        );
    }
}
