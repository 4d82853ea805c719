//! Keeps the consent table current: reads every partition of the consent topic from the
//! beginning at start, then follows it. Knows when start-up has read every partition to the
//! end, so no event is judged on a partial table.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::record::{parse_key, parse_value};
use super::{ConsentState, ConsentTable, ConsentUpdate, Rejection};
use crate::config::Config;
use crate::kafka::{consent_consumer_config, KafkaContext, LagGauge};
use crate::telemetry::{self, ConsentMetrics};
use crate::vocabulary::{CategorySet, Vocabulary};

pub struct ConsentFollower {
    consumer: BaseConsumer<KafkaContext>,
    /// Partitions not yet read to the end they had at start.
    behind: HashSet<i32>,
    /// The end offset each partition had at start.
    start_ends: HashMap<i32, i64>,
    /// Users whose last record (by offset) was stale: the newer state is to be re-published
    /// so that compaction, which keeps the last record, cannot bring the stale one back.
    to_republish: HashSet<Box<str>>,
    metrics: ConsentMetrics,
}

impl ConsentFollower {
    /// Assigns every partition of the consent topic from its beginning.
    pub fn start(
        config: &Config,
        partitions: usize,
        metrics: ConsentMetrics,
    ) -> Result<ConsentFollower, KafkaError> {
        let consumer: BaseConsumer<KafkaContext> = consent_consumer_config(config)
            .create_with_context(KafkaContext::new(Some(LagGauge::Total(
                metrics.lag.clone(),
            ))))?;
        let topic = &config.consent.topic;
        let timeout = Duration::from_secs(config.kafka.startup_timeout_secs);
        let mut assignment = TopicPartitionList::new();
        let mut behind = HashSet::new();
        let mut start_ends = HashMap::new();
        for partition in 0..partitions as i32 {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
            if high > low {
                behind.insert(partition);
            }
            start_ends.insert(partition, high);
        }
        consumer.assign(&assignment)?;
        Ok(ConsentFollower {
            consumer,
            behind,
            start_ends,
            to_republish: HashSet::new(),
            metrics,
        })
    }

    /// True once every partition has been read up to the end it had at start.
    pub fn caught_up(&self) -> bool {
        self.behind.is_empty()
    }

    /// Applies the records that arrive within `timeout`, at most `budget` of them, then, once
    /// caught up, re-publishes the newer states that stale records call for. Returns how
    /// many records were read.
    pub fn poll(
        &mut self,
        table: &mut ConsentTable,
        vocabulary: &Vocabulary,
        timeout: Duration,
        budget: usize,
        republish: &mut dyn FnMut(&str, ConsentState),
    ) -> usize {
        let mut read = 0;
        let mut wait = timeout;
        while read < budget {
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    read += 1;
                    apply(
                        &mut self.to_republish,
                        &self.metrics,
                        table,
                        vocabulary,
                        &message,
                    );
                    let partition = message.partition();
                    if self
                        .start_ends
                        .get(&partition)
                        .is_some_and(|end| message.offset() + 1 >= *end)
                    {
                        self.behind.remove(&partition);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.behind.remove(&partition);
                }
                Some(Err(error)) => {
                    telemetry::error("consent", "consume");
                    tracing::warn!(%error, "reading the consent topic failed; retrying");
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        self.metrics.states.set(table.len() as f64);
        if self.caught_up() && !self.to_republish.is_empty() {
            for user in self.to_republish.drain() {
                if let Some(state) = table.get(&user) {
                    republish(&user, state);
                }
            }
        }
        read
    }
}

/// Applies one consent record to the table.
fn apply(
    to_republish: &mut HashSet<Box<str>>,
    metrics: &ConsentMetrics,
    table: &mut ConsentTable,
    vocabulary: &Vocabulary,
    message: &rdkafka::message::BorrowedMessage<'_>,
) {
    metrics.received.increment(1);
    let user = match parse_key(message.key()) {
        Ok(user) => user,
        Err(reason) => {
            metrics.rejected(reason);
            return;
        }
    };
    let record_time_ms = message.timestamp().to_millis().unwrap_or(0);
    let superseded = match parse_value(message.payload(), record_time_ms, vocabulary) {
        Ok(ConsentUpdate::Remove) => {
            table.remove(user);
            metrics.removed.increment(1);
            true
        }
        Ok(ConsentUpdate::Set(state)) => match table.apply(user, state) {
            super::ApplyOutcome::Applied => {
                metrics.applied.increment(1);
                true
            }
            super::ApplyOutcome::Stale { .. } => {
                metrics.rejected(Rejection::Stale);
                to_republish.insert(user.into());
                false
            }
        },
        Err(reason) => {
            // Fail closed: whatever this record meant, it may have been a revocation.
            metrics.rejected(reason);
            table.overwrite(
                user,
                ConsentState {
                    granted: CategorySet::EMPTY,
                    updated_at_ms: record_time_ms,
                },
            );
            true
        }
    };
    if superseded && !to_republish.is_empty() {
        to_republish.remove(user);
    }
}
