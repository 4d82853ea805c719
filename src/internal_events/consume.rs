//! Reading the input topics and the hold topic.

use rdkafka::error::KafkaError;

use super::InternalEvent;
use crate::telemetry;

/// A read of the input topics failed; the loop reads again next turn.
pub struct InputReadFailed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for InputReadFailed<'_> {
    fn emit(self) {
        telemetry::error("consume", "poll");
        tracing::warn!(error = %self.error, "reading the input topics failed; retrying");
    }
}

/// After an aborted transaction, events read but not judged could not be sought back to:
/// the service stops without committing past them (a restart reads them again).
pub struct ReadAgainSeekFailed<'a> {
    pub topic: &'a str,
    pub error: &'a KafkaError,
}

impl InternalEvent for ReadAgainSeekFailed<'_> {
    fn emit(self) {
        telemetry::error("consume", "seek");
        tracing::error!(topic = %self.topic, error = %self.error, "cannot read dropped events again; stopping");
    }
}

/// The group coordinator did not answer the leave before the stop's deadline.
pub struct ConsumerCloseTimedOut;

impl InternalEvent for ConsumerCloseTimedOut {
    fn emit(self) {
        telemetry::error("consume", "close_timeout");
        tracing::warn!(
            "the group coordinator did not answer before the stop's deadline; leaving without it"
        );
    }
}

/// Reading the input could not be paused while the table catches up.
pub struct InputPauseFailed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for InputPauseFailed<'_> {
    fn emit(self) {
        telemetry::error("consume", "pause");
        tracing::warn!(error = %self.error, "cannot pause reading the input while waiting");
    }
}

/// Reading the input could not be resumed after a wait; tried again next turn.
pub struct InputResumeFailed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for InputResumeFailed<'_> {
    fn emit(self) {
        telemetry::error("consume", "resume");
        tracing::warn!(error = %self.error, "cannot resume reading the input after a wait; retrying");
    }
}

/// An event of a partition the delivery tag cannot number (past 65535): never committed past.
pub struct UntrackablePartition<'a> {
    pub topic: &'a str,
    pub partition: i32,
}

impl InternalEvent for UntrackablePartition<'_> {
    fn emit(self) {
        telemetry::error("consume", "untrackable_partition");
        tracing::error!(
            topic = self.topic,
            partition = self.partition,
            "cannot track this partition"
        );
    }
}

/// librdkafka reported a rebalance error.
pub struct RebalanceFailed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for RebalanceFailed<'_> {
    fn emit(self) {
        telemetry::error("consume", "rebalance");
        tracing::warn!(error = %self.error, "rebalance error");
    }
}

/// The hold topic could not be paused (memory full) or resumed.
pub struct HoldPauseFailed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for HoldPauseFailed<'_> {
    fn emit(self) {
        telemetry::error("hold", "pause");
        tracing::warn!(error = %self.error, "cannot pause or resume the hold topic");
    }
}
