//! Consent learned from events (`consent.learn_from_events`): a `track` event named in
//! `consent.learn_event_names` that carries consent is the CMP telling us the user's new
//! choice; it is written to the consent topic, keyed by `userId` (else `anonymousId`), with
//! `updatedAt` the event's time, when it differs from the stored state and is not older.
//! The write is tied to the event like its other writes (its offset is committed only once
//! the write is acknowledged; in exactly-once mode it is part of the transaction), and the
//! follower reads it back like any other consent record.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use crate::config::ConsentFormat;
use crate::consent::record::{encode_protobuf, encode_value, MAX_IDENTIFIER_BYTES};
use crate::consent::{ConsentState, ConsentTable};
use crate::delivery::Delivery;
use crate::event::EventView;
use crate::vocabulary::Vocabulary;

/// Header on a consent record learned from an event.
pub const LEARNED_HEADER: &str = "consent-enforcer-learned";

/// Header on a consent record learned from an event: the event's `messageId`, when it has one
/// (the audit log names it as the change's source).
pub const LEARNED_FROM_HEADER: &str = "consent-enforcer-learned-from";

/// The longest `messageId` the learned record names.
const MAX_MESSAGE_ID_BYTES: usize = 256;

pub struct Learner<'a> {
    pub consent_topic: &'a str,
    pub format: ConsentFormat,
}

impl Learner<'_> {
    /// The state to write for a preference event judged at `time_ms`, if any.
    pub fn learned(
        &self,
        table: &ConsentTable,
        view: &EventView<'_>,
        time_ms: i64,
        vocabulary: &Vocabulary,
    ) -> Option<(String, ConsentState)> {
        if !view.preference_update {
            return None;
        }
        let stamps = view.stamps()?;
        let id = view.user_id.as_deref().or(view.anonymous_id.as_deref())?;
        if id.len() > MAX_IDENTIFIER_BYTES {
            return None;
        }
        let stored = table.get(id);
        // Never over a newer choice (a failed-closed state is replaced by a valid one).
        if stored.is_some_and(|s| !s.is_failed_closed() && s.updated_at_ms >= time_ms) {
            return None;
        }
        // The categories are the event's; subscriptions, jurisdiction and GPC stay the
        // stored state's (the preference event says nothing of them).
        let state_only = vocabulary.state_only();
        let kept = stored
            .filter(|s| !s.is_failed_closed())
            .map_or(Default::default(), |s| s.granted.intersection(state_only));
        let granted = stamps.without(state_only).union(kept);
        if stored.is_some_and(|s| s.granted == granted) {
            return None;
        }
        Some((
            id.to_owned(),
            ConsentState {
                granted,
                updated_at_ms: time_ms,
            },
        ))
    }

    /// Writes a learned state, tagged `tag` (the event's).
    pub fn write(
        &self,
        delivery: &Delivery,
        user: &str,
        state: &ConsentState,
        message_id: Option<&str>,
        vocabulary: &Vocabulary,
        tag: usize,
    ) {
        let (value, content_type) = match self.format {
            ConsentFormat::Protobuf => {
                (encode_protobuf(state, vocabulary), "application/x-protobuf")
            }
            ConsentFormat::Json | ConsentFormat::Auto => {
                (encode_value(state, vocabulary), "application/json")
            }
        };
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "content-type",
                value: Some(content_type),
            })
            .insert(Header {
                key: LEARNED_HEADER,
                value: Some("true"),
            });
        // A header, not a payload: longer ones are left out rather than risk the record's size.
        if let Some(id) = message_id.filter(|id| id.len() <= MAX_MESSAGE_ID_BYTES) {
            headers = headers.insert(Header {
                key: LEARNED_FROM_HEADER,
                value: Some(id),
            });
        }
        let record = BaseRecord::with_opaque_to(self.consent_topic, tag)
            .key(user.as_bytes())
            .payload(value.as_slice())
            .headers(headers);
        // A failure is recorded by `send` and stops the service.
        let _ = delivery.send(record);
    }
}
