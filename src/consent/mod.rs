//! The consent side of the join: what a consent record says ([`record`]), the table of every
//! user's current state ([`table`]), and the Kafka consumer that keeps the table current
//! ([`follower`]).

pub mod follower;
pub mod key;
pub mod record;
pub mod table;

use crate::vocabulary::CategorySet;

pub use follower::ConsentFollower;
pub use record::{ConsentUpdate, Rejection};
pub use table::{ApplyOutcome, ConsentTable};

/// One user's consent: the categories granted, and when that choice was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentState {
    pub granted: CategorySet,
    /// `updatedAt` of the record (or its Kafka timestamp), in Unix milliseconds.
    pub updated_at_ms: i64,
}
