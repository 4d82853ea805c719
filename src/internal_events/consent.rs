//! Following the consent topic and keeping the table fresh.

use std::time::Duration;

use rdkafka::error::KafkaError;

use super::InternalEvent;
use crate::telemetry;

/// Writes judged before a consent revocation are still unacknowledged after
/// `delivery.drain_timeout`; the revocation keeps waiting for them.
pub struct RevocationWaitsForWrites {
    pub drain_timeout: Duration,
}

impl InternalEvent for RevocationWaitsForWrites {
    fn emit(self) {
        telemetry::error("consent", "revocation_drain_timeout");
        tracing::warn!(
            drain_timeout_secs = self.drain_timeout.as_secs(),
            "writes judged before a revocation are still unacknowledged; the revocation waits for them"
        );
    }
}

/// Co-partitioned mode: the consent partitions of this instance's input partitions cannot be
/// followed; the service stops.
pub struct ConsentPartitionsNotFollowed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for ConsentPartitionsNotFollowed<'_> {
    fn emit(self) {
        telemetry::error("consent", "follow");
        tracing::error!(error = %self.error, "cannot follow the consent partitions of this instance's input partitions");
    }
}

/// Consent partitions added since start cannot be followed yet; nothing is judged until they
/// are. Counted each try, logged on the first of a run.
pub struct AddedConsentPartitionsNotFollowed<'a> {
    pub error: &'a KafkaError,
    pub first_of_a_run: bool,
}

impl InternalEvent for AddedConsentPartitionsNotFollowed<'_> {
    fn emit(self) {
        telemetry::error("consent", "follow");
        if self.first_of_a_run {
            tracing::warn!(error = %self.error, "cannot follow consent partitions added since start; not judging events until it can");
        }
    }
}

/// Co-partitioned mode: the consent topic's partition count changed; nothing is judged.
pub struct ConsentPartitionCountChanged {
    pub partitions: usize,
    pub expected: usize,
}

impl InternalEvent for ConsentPartitionCountChanged {
    fn emit(self) {
        telemetry::error("consent", "partitions_changed");
        tracing::error!(
            partitions = self.partitions,
            expected = self.expected,
            "the consent topic's partition count changed: co-partitioned mode no longer matches the input topics; not judging events until restarted"
        );
    }
}

/// A read of the consent topic failed; retried next turn.
pub struct ConsentReadFailed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for ConsentReadFailed<'_> {
    fn emit(self) {
        telemetry::error("consent", "consume");
        tracing::warn!(error = %self.error, "reading the consent topic failed; retrying");
    }
}

/// The consent topic's end offsets could not be sampled for a batch (asked again).
pub struct EndOffsetsNotSampled<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for EndOffsetsNotSampled<'_> {
    fn emit(self) {
        telemetry::error("consent", "sample_end_offsets");
        tracing::debug!(error = %self.error, "cannot sample the consent topic's end offsets");
    }
}

/// Consent records are held back behind a transaction left open on the consent topic for
/// longer than `consent.max_staleness`: not ready, nothing judged until it ends.
pub struct ConsentHiddenByOpenTransaction {
    pub max_staleness: Duration,
}

impl InternalEvent for ConsentHiddenByOpenTransaction {
    fn emit(self) {
        telemetry::error("consent", "hidden_by_open_transaction");
        tracing::error!(
            max_staleness_ms = self.max_staleness.as_millis() as u64,
            "consent records are held back behind a transaction left open on the consent topic: not judging events until it ends"
        );
    }
}

/// The table could not catch up with the consent topic for `consent.max_staleness`: not
/// ready, nothing judged until it can.
pub struct ConsentStale {
    pub max_staleness: Duration,
}

impl InternalEvent for ConsentStale {
    fn emit(self) {
        telemetry::error("consent", "stale");
        tracing::error!(
            max_staleness_ms = self.max_staleness.as_millis() as u64,
            "cannot catch up with the consent topic: not judging events until it can"
        );
    }
}
