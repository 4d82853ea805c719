//! The event consumer's context: on revocation, the revoked partitions' in-flight writes are
//! drained and their offsets committed before the partitions are released, so the next owner
//! starts exactly where this instance's acknowledged work ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use super::stop_reserve;
use crate::config::Guarantee;
use crate::delivery::Delivery;
use crate::kafka::{KafkaContext, LagGauge};
use crate::telemetry::{self, INPUT_LAG};

pub struct EventConsumerContext {
    kafka: KafkaContext,
    delivery: Arc<Delivery>,
    drain_timeout: Duration,
}

impl EventConsumerContext {
    pub fn new(delivery: Arc<Delivery>, drain_timeout: Duration) -> EventConsumerContext {
        EventConsumerContext {
            kafka: KafkaContext::new(Some(LagGauge::PerTopic(INPUT_LAG))),
            delivery,
            drain_timeout,
        }
    }
}

impl ClientContext for EventConsumerContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.kafka.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.kafka.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.kafka.stats(statistics);
    }
}

impl ConsumerContext for EventConsumerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let revoked = self.delivery.input_partitions(list);
                tracing::info!(
                    partitions = revoked.len(),
                    "partitions revoked; draining them"
                );
                if self.delivery.guarantee() == Guarantee::ExactlyOnce {
                    // The open transaction holds events of every owned partition: commit it
                    // whole, offsets of the revoked ones included. If that fails (a lost
                    // assignment is fenced), the abort rewinds only the partitions kept.
                    self.delivery.unassign(&revoked);
                    self.delivery
                        .commit_transaction(consumer, self.drain_timeout);
                    self.delivery.remove(&revoked);
                    return;
                }
                // One deadline for the drain and the commit: the drain timeout, or what is
                // left of the stop's deadline, less (when stopping) the reserve that the
                // commit and the leave need.
                let until = Instant::now() + self.delivery.bounded(self.drain_timeout);
                let reserve = if self.delivery.stopping() {
                    stop_reserve(self.drain_timeout)
                } else {
                    Duration::ZERO
                };
                let left = || until.saturating_duration_since(Instant::now());
                let drained = self
                    .delivery
                    .drain(Some(&revoked), left().saturating_sub(reserve));
                let timeout = left().saturating_sub(reserve / 2);
                if consumer.assignment_lost() {
                    tracing::warn!("assignment lost: the group moved on, not committing");
                } else if let Err(error) =
                    self.delivery
                        .commit_within(consumer, Some(&revoked), timeout)
                {
                    telemetry::error("commit", "revoke");
                    tracing::warn!(%error, "commit on revocation failed; the next owner redelivers");
                }
                if !drained {
                    telemetry::error("delivery", "revoke_drain");
                }
                self.delivery.remove(&revoked);
            }
            Rebalance::Assign(list) => {
                tracing::info!(partitions = list.count(), "partitions assigned");
                self.delivery.assign(&self.delivery.input_partitions(list));
            }
            Rebalance::Error(error) => {
                telemetry::error("consume", "rebalance");
                tracing::warn!(%error, "rebalance error");
            }
        }
    }
}
