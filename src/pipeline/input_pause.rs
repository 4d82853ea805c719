//! While both batches wait for the consent table past a catch-up's wait (a slow sample, a
//! stale table), the event consumer is still polled: rebalance callbacks run only inside a
//! poll, so without it a newcomer's rebalance would stall, and past `max.poll.interval.ms`
//! librdkafka would drop this instance from the group while it still holds events of
//! partitions it no longer owns. The input is paused meanwhile, so polling reads no more
//! events; events of partitions assigned while paused join the batch read ahead, which then
//! asks for a new sample. Reading resumes once the waiting batch is judged.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

use super::batch::Batch;
use super::rebalance::EventConsumerContext;
use crate::delivery::Delivery;
use crate::internal_events::{self as events, InternalEvent};

#[derive(Debug, Default)]
pub struct InputPause {
    paused: bool,
}

impl InputPause {
    /// Serves the group while `ahead` waits behind the batch being caught up for.
    pub fn serve<'c>(
        &mut self,
        consumer: &'c BaseConsumer<EventConsumerContext>,
        delivery: &Delivery,
        ahead: &mut Batch<'c>,
    ) {
        // Every time: partitions assigned since the last pause start out fetching.
        self.pause_all(consumer);
        if let Some(later) = Batch::read(consumer, delivery, Duration::ZERO) {
            ahead.extend(later);
        }
    }

    /// Reads on after a wait. Partitions of `keep_paused` (the hold topic, when its memory is
    /// full) stay paused.
    pub fn resume(
        &mut self,
        consumer: &BaseConsumer<EventConsumerContext>,
        keep_paused: Option<&str>,
    ) {
        if !self.paused {
            return;
        }
        // Tried again on the next fresh turn if this fails.
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let mut list = TopicPartitionList::new();
        for element in assignment.elements() {
            if Some(element.topic()) != keep_paused {
                list.add_partition(element.topic(), element.partition());
            }
        }
        match consumer.resume(&list) {
            Ok(()) => self.paused = false,
            Err(error) => {
                events::InputResumeFailed { error: &error }.emit();
            }
        }
    }

    fn pause_all(&mut self, consumer: &BaseConsumer<EventConsumerContext>) {
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        if assignment.count() == 0 {
            return;
        }
        match consumer.pause(&assignment) {
            Ok(()) => self.paused = true,
            Err(error) => {
                events::InputPauseFailed { error: &error }.emit();
            }
        }
    }
}
