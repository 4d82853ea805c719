//! The consent side of the join: what a consent record says ([`record`]), the table of every
//! user's current state ([`table`]), and the Kafka consumer that keeps the table current
//! ([`follower`]).

mod apply;
pub mod follower;
pub mod hidden;
pub mod history;
pub mod key;
pub mod lookback;
pub(crate) mod read_progress;
pub mod record;
pub mod republish;
pub mod sampler;
pub mod suppressions;
pub mod table;

use crate::vocabulary::CategorySet;

pub use follower::ConsentFollower;
pub use record::{ConsentUpdate, Rejection};
pub use table::{ConsentTable, RecordOutcome, StatesAt, Widest};

/// One user's consent: the categories granted, and when that choice was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentState {
    pub granted: CategorySet,
    /// `updatedAt` of the record (or its Kafka timestamp), in Unix milliseconds.
    pub updated_at_ms: i64,
}

impl ConsentState {
    /// The state of an identifier whose last record was malformed: nothing granted, and
    /// newer than any other state, so that it wins the newer-of-two comparison against the
    /// person's other identifier and can never widen what the person receives. Valid
    /// `updatedAt` values are capped at their record's timestamp, far below it.
    pub const FAILED_CLOSED: ConsentState = ConsentState {
        granted: CategorySet::EMPTY,
        updated_at_ms: i64::MAX,
    };

    /// The state a record with this state applies as: its `updatedAt` capped at the record's
    /// timestamp (a record cannot be from after Kafka received it).
    pub fn applied_at(self, record_time_ms: i64) -> ConsentState {
        ConsentState {
            updated_at_ms: self.updated_at_ms.min(record_time_ms),
            ..self
        }
    }

    pub fn is_failed_closed(&self) -> bool {
        self.updated_at_ms == i64::MAX
    }
}
