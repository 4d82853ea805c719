//! Writes, and the exactly-once transaction.

use std::time::Duration;

use rdkafka::error::KafkaError;

use super::InternalEvent;
use crate::telemetry;

/// Why a producer reports itself fenced.
#[derive(Debug, Clone, Copy)]
pub enum Fencing {
    /// The broker aborted a transaction open longer than `transaction.timeout.ms`
    /// (librdkafka reports it as fencing too).
    TransactionTimedOut { open: Duration },
    /// Another instance uses this `delivery.transactional_id`.
    AnotherInstance,
}

fn log_fenced(fencing: Fencing, error: &KafkaError) {
    match fencing {
        Fencing::TransactionTimedOut { open } => tracing::error!(
            %error,
            open_secs = open.as_secs(),
            "the broker aborted the transaction, open longer than transaction.timeout.ms; stopping"
        ),
        Fencing::AnotherInstance => {
            tracing::error!(%error, "fenced: another instance uses this delivery.transactional_id; stopping")
        }
    }
}

/// A write failed for good: the service stops without committing past it.
pub struct WriteFailedForGood<'a> {
    pub topic: &'a str,
    pub error: &'a KafkaError,
    pub fencing: Option<Fencing>,
}

impl InternalEvent for WriteFailedForGood<'_> {
    fn emit(self) {
        telemetry::error("delivery", "write_failed");
        match self.fencing {
            Some(fencing) => log_fenced(fencing, self.error),
            None => {
                tracing::error!(topic = %self.topic, error = %self.error, "write failed for good; stopping without committing past it")
            }
        }
    }
}

/// The transaction failed for good (fenced, aborted too often, or its producer could not be
/// replaced): the service stops.
pub struct TransactionFailedForGood<'a> {
    pub error: &'a KafkaError,
    pub aborts: u32,
    pub fencing: Option<Fencing>,
}

impl InternalEvent for TransactionFailedForGood<'_> {
    fn emit(self) {
        telemetry::error("delivery", "transaction_fatal");
        match self.fencing {
            Some(fencing) => log_fenced(fencing, self.error),
            None => {
                tracing::error!(error = %self.error, aborts = self.aborts, "transaction failed for good; stopping")
            }
        }
    }
}

/// The first failed write of a transaction: it will be aborted and its events judged again.
pub struct WriteFailedInTransaction<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for WriteFailedInTransaction<'_> {
    fn emit(self) {
        telemetry::error("delivery", "write_failed_in_transaction");
        tracing::warn!(error = %self.error, "a write failed; its transaction will be aborted");
    }
}

/// The transactional producer could neither commit nor abort; it is replaced.
pub struct ProducerRenewed<'a> {
    pub error: &'a KafkaError,
}

impl InternalEvent for ProducerRenewed<'_> {
    fn emit(self) {
        telemetry::error("delivery", "producer_renewed");
        tracing::warn!(error = %self.error, "the transactional producer cannot go on; replacing it");
    }
}

/// Revoked partitions were released with writes still unacknowledged (the drain logged
/// them): their next owner reads those events again.
pub struct RevokedPartitionsNotDrained;

impl InternalEvent for RevokedPartitionsNotDrained {
    fn emit(self) {
        telemetry::error("delivery", "revoke_drain");
    }
}
