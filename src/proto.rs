//! The protobuf messages of `proto/consent.proto` (consent states and privacy requests),
//! generated at build time.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/consent_enforcer.v1.rs"));

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_state_survives_encoding_and_decoding() {
        let state = ConsentState {
            category_preferences: [("analytics".to_owned(), true)].into_iter().collect(),
            updated_at_ms: Some(1_764_000_000_000),
            jurisdiction: Some("US-CA".to_owned()),
            gpc: Some(true),
            subscriptions: [("email".to_owned(), SubscriptionStatus::Subscribed as i32)]
                .into_iter()
                .collect(),
            source: None,
        };
        let bytes = state.encode_to_vec();
        assert_eq!(ConsentState::decode(bytes.as_slice()).unwrap(), state);
        assert!(ConsentState::decode(&b"\xff\xff\xff"[..]).is_err());
    }
}
