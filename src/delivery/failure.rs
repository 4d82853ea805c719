//! What stops delivery for good.

use rdkafka::error::KafkaError;

/// What stopped delivery for good: the service stops and commits nothing past it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryFailure {
    /// A write failed and retrying cannot fix it.
    #[error("a write to {topic} failed and retrying cannot fix it: {error}")]
    Write { topic: String, error: KafkaError },
    /// Exactly-once: the transaction could not be opened, committed or aborted (fenced by
    /// another instance, aborted too often, or the producer could not be replaced).
    #[error("the transaction failed and retrying cannot fix it: {0}")]
    Transaction(KafkaError),
    /// Events dropped after an aborted transaction could not be sought back to.
    #[error("cannot read dropped events of {topic} again, and retrying cannot fix it: {error}")]
    Seek { topic: String, error: KafkaError },
}
