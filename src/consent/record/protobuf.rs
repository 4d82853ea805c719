//! A consent state in protobuf (`proto/consent.proto`'s `ConsentState`), read into the same
//! [`ConsentState`] as its JSON twin: the two encodings of one state decide alike.

use prost::Message;

use super::{ConsentUpdate, ReadValue, Rejection};
use crate::consent::ConsentState;
use crate::proto;
use crate::vocabulary::{BitKind, CategorySet, Vocabulary};

pub(super) fn read(bytes: &[u8], record_time_ms: i64, vocabulary: &Vocabulary) -> ReadValue {
    let Ok(message) = proto::ConsentState::decode(bytes) else {
        return ReadValue {
            update: Err(Rejection::NotProtobuf),
            unknown_names: 0,
        };
    };
    // A category named by its name and an alias (or two aliases) is granted only if every
    // name grants it, as in JSON. Protobuf has no duplicate keys: the last entry of a
    // repeated map key is the one decoded, as the protobuf specification says.
    let (mut granted, mut denied) = (CategorySet::EMPTY, CategorySet::EMPTY);
    let mut unknown_names = 0;
    for (name, grants) in &message.category_preferences {
        match vocabulary.category_name_of(name) {
            Some(name) => {
                if let Some(bit) = name.bit {
                    if *grants {
                        granted.insert(bit);
                    } else {
                        denied.insert(bit);
                    }
                }
            }
            None => unknown_names += 1,
        }
    }
    let mut subscribed = CategorySet::EMPTY;
    for (channel, status) in &message.subscriptions {
        if let (Some(bit), Ok(proto::SubscriptionStatus::Subscribed)) = (
            vocabulary.channel(channel),
            proto::SubscriptionStatus::try_from(*status),
        ) {
            subscribed.insert(bit);
        }
    }
    let mut facts = CategorySet::EMPTY;
    if let Some(bit) = message
        .jurisdiction
        .as_deref()
        .and_then(|named| vocabulary.jurisdiction_named(named))
    {
        facts.insert(bit);
    }
    if let (Some(true), Some(bit)) = (message.gpc, vocabulary.gpc()) {
        facts.insert(bit);
    }
    ReadValue {
        update: Ok(ConsentUpdate::Set(ConsentState {
            granted: granted.without(denied).union(subscribed).union(facts),
            updated_at_ms: message.updated_at_ms.unwrap_or(record_time_ms),
        })),
        unknown_names,
    }
}

/// What the enforcer re-publishes for a user failed closed, in protobuf: a lone zero byte,
/// which is no protobuf message (field number 0 is invalid), so reading it back fails the
/// user closed again.
pub const FAILED_CLOSED_PROTOBUF: &[u8] = &[0];

/// Encodes a state as protobuf, for re-publishing under `consent.format = "protobuf"`. Only
/// the categories and channels the configuration knows are in the table, so only those are
/// written.
pub fn encode_protobuf(state: &ConsentState, vocabulary: &Vocabulary) -> Vec<u8> {
    if state.is_failed_closed() {
        return FAILED_CLOSED_PROTOBUF.to_vec();
    }
    let mut message = proto::ConsentState {
        updated_at_ms: Some(state.updated_at_ms),
        ..Default::default()
    };
    for bit in 0..vocabulary.bit_count() {
        let name = vocabulary.bit_name(bit).to_owned();
        let set = state.granted.contains(bit);
        match vocabulary.kind(bit) {
            BitKind::Category => {
                message.category_preferences.insert(name, set);
            }
            BitKind::Channel if set => {
                message
                    .subscriptions
                    .insert(name, proto::SubscriptionStatus::Subscribed as i32);
            }
            BitKind::Gpc if set => message.gpc = Some(true),
            BitKind::Jurisdiction if set => message.jurisdiction = Some(name),
            _ => {}
        }
    }
    message.encode_to_vec()
}
