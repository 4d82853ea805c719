//! The event consumer's context: on revocation, the revoked partitions' in-flight writes are
//! drained and their offsets committed before the partitions are released, so the next owner
//! starts exactly where this instance's acknowledged work ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use crate::delivery::exactly_once::Rewound;
use crate::delivery::{commits, Delivery};
use crate::internal_events::{self as events, InternalEvent};
use crate::kafka::{KafkaContext, LagGauge};
use crate::sync::lock;
use crate::telemetry::INPUT_LAG;

pub struct EventConsumerContext {
    kafka: KafkaContext,
    delivery: Arc<Delivery>,
    drain_timeout: Duration,
    /// Where a transaction aborted in a revocation rewound the consumer to, until the loop
    /// takes it (the callback runs inside the consumer's poll and cannot return it).
    rewound: Mutex<Rewound>,
}

impl EventConsumerContext {
    pub fn new(delivery: Arc<Delivery>, drain_timeout: Duration) -> EventConsumerContext {
        EventConsumerContext {
            kafka: KafkaContext::new(Some(LagGauge::PerTopic(INPUT_LAG))),
            delivery,
            drain_timeout,
            rewound: Mutex::new(Rewound::new()),
        }
    }

    /// Where transactions aborted in revocations since the last call rewound the consumer to.
    pub fn take_rewound(&self) -> Rewound {
        std::mem::take(&mut *lock(&self.rewound))
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
                let revoked = self.delivery.inputs().input_partitions(list);
                tracing::info!(
                    partitions = revoked.len(),
                    "partitions revoked; draining them"
                );
                commits::on_revoke(
                    &self.delivery,
                    consumer,
                    &revoked,
                    self.drain_timeout,
                    &mut lock(&self.rewound),
                );
            }
            Rebalance::Assign(list) => {
                tracing::info!(partitions = list.count(), "partitions assigned");
                let inputs = self.delivery.inputs();
                inputs.assign(&inputs.input_partitions(list));
            }
            Rebalance::Error(error) => {
                events::RebalanceFailed { error }.emit();
            }
        }
    }
}
