//! Offset commits to the consumer group (at-least-once).

use rdkafka::error::{KafkaError, KafkaResult};

use super::InternalEvent;
use crate::telemetry;

/// The broker refused a periodic commit (or some of its partitions).
pub struct CommitRejected<'a> {
    pub result: &'a KafkaResult<()>,
}

impl InternalEvent for CommitRejected<'_> {
    fn emit(self) {
        telemetry::error("commit", "rejected");
        tracing::warn!(error = ?self.result, "offset commit rejected; committing again next time");
    }
}

/// A periodic commit could not be sent.
pub struct CommitNotSent<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for CommitNotSent<'_> {
    fn emit(self) {
        telemetry::error("commit", "async");
        tracing::warn!(error = %self.error, "offset commit failed; retrying with the next commit");
    }
}

/// The last commit of a stop failed: the next owner reads the uncommitted events again.
pub struct FinalCommitFailed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for FinalCommitFailed<'_> {
    fn emit(self) {
        telemetry::error("commit", "shutdown");
        tracing::warn!(error = %self.error, "final offset commit failed; uncommitted events will be redelivered");
    }
}

/// The commit of revoked partitions failed: their next owner reads those events again.
pub struct RevocationCommitFailed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for RevocationCommitFailed<'_> {
    fn emit(self) {
        telemetry::error("commit", "revoke");
        tracing::warn!(error = %self.error, "commit on revocation failed; the next owner redelivers");
    }
}
