//! Privacy requests (`[privacy] topic`): suppression of a user's events. The records are read
//! ([`request`]) and followed ([`follower`]) beside the consent topic, with the same
//! freshness guarantee; who is suppressed is kept with the consent table
//! ([`crate::consent::suppressions`]).

pub mod follower;
pub mod request;

pub use follower::PrivacyFollower;
pub use request::{read_request, PrivacyRejection, PrivacyUpdate, RequestType};
