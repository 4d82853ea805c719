//! Privacy requests (`[privacy] topic`): suppression of a user's events. The records are read
//! ([`request`]) and followed ([`follower`]) beside the consent topic, with the same
//! freshness guarantee; who is suppressed is kept with the consent table
//! ([`crate::consent::suppressions`]).

pub mod follower;
pub mod request;

pub use follower::PrivacyFollower;

/// A delete request to carry out (see [`crate::consent::follower::ConsentEffects::delete`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub kind: RequestType,
    pub requested_at_ms: i64,
    /// The privacy partition the request is in, where it is written back marked done.
    pub partition: i32,
    /// The request marked done, encoded as it was read; `None` when a newer request came
    /// after it (then it is not written back).
    pub done: Option<Vec<u8>>,
}

impl Deletion {
    /// The deletion record a destination's `deletion_topic` receives.
    pub fn record(&self, user: &str, destination: &str) -> Vec<u8> {
        serde_json::json!({
            "type": "DELETE",
            "userId": user,
            "destination": destination,
            "requestType": self.kind.as_str(),
            "requestedAt": crate::consent::record::format_rfc3339_ms(self.requested_at_ms),
        })
        .to_string()
        .into_bytes()
    }
}
pub use request::{encode_done, read_request, PrivacyRejection, PrivacyUpdate, RequestType};
