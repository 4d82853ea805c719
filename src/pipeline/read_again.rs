//! After an aborted transaction: where the consumer must seek so that the events read but
//! dropped unjudged are read again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::Offset;

use super::batch::Batch;
use super::hold::Hold;
use super::rebalance::EventConsumerContext;
use crate::delivery::exactly_once::Rewound;
use crate::delivery::Delivery;
use crate::input::InputPartition;
use crate::internal_events::{self as events, InternalEvent};

/// The first dropped offset of each input partition.
#[derive(Debug, Default)]
pub struct ReadAgain(HashMap<InputPartition, (String, i64)>);

impl ReadAgain {
    pub fn dropped(&mut self, input: InputPartition, topic: &str, offset: i64) {
        let first = self
            .0
            .entry(input)
            .or_insert_with(|| (topic.to_owned(), offset));
        first.1 = first.1.min(offset);
    }

    /// The seeks needed, as (topic, partition, offset): every partition with dropped events
    /// is sought back to the first of them, or to where the abort rewound it if that is
    /// earlier. A partition the abort rewound needs the seek too: a read that returned events
    /// before the abort (inside its rebalance callback) can go on returning events from the
    /// rewound position, and those are among the dropped ones, past the consumer's position.
    pub fn seeks(self, rewound: &[(InputPartition, i64)]) -> Vec<(String, i32, i64)> {
        let mut seeks: Vec<(String, i32, i64)> = self
            .0
            .into_iter()
            .map(|(input, (topic, first))| {
                let rewind = rewound
                    .iter()
                    .filter(|(r, _)| *r == input)
                    .map(|(_, offset)| *offset)
                    .min();
                let to = rewind.map_or(first, |rewind| rewind.min(first));
                (topic, i32::from(input.partition), to)
            })
            .collect();
        seeks.sort();
        seeks
    }
}

/// After an aborted transaction rewound the consumer, events read but not judged are dropped
/// and read again: every partition with dropped events is sought back to the first of them
/// (or to the rewind offset, if earlier), since events read after the abort's own seek are
/// among them; held events of rewound partitions are forgotten from the rewind offsets on.
pub(super) fn after_rewind(
    delivery: &Delivery,
    consumer: &BaseConsumer<EventConsumerContext>,
    batches: [&mut Option<Batch<'_>>; 2],
    hold: Option<&RefCell<Hold>>,
    timeout: Duration,
    rewound: Rewound,
) {
    if rewound.is_empty() {
        return;
    }
    let mut read_again = ReadAgain::default();
    for batch in batches.into_iter().filter_map(Option::take) {
        for (index, message) in batch.events.iter().enumerate() {
            let Some(input) = delivery
                .inputs()
                .input_partition(message.topic(), message.partition())
            else {
                continue;
            };
            // Read under an earlier assignment: the consumer reads it again from the
            // committed offset anyway, and a seek to it could skip what lies before.
            if !delivery
                .inputs()
                .owned_under_assignment_before(input, batch.assignments_before(index))
            {
                continue;
            }
            read_again.dropped(input, message.topic(), message.offset());
        }
    }
    for (topic, partition, offset) in read_again.seeks(&rewound) {
        // Bounded by the stop's deadline too: a seek waits for the partition's broker thread.
        let timeout = delivery.bounded(timeout);
        if let Err(error) = consumer.seek(&topic, partition, Offset::Offset(offset), timeout) {
            events::ReadAgainSeekFailed {
                topic: &topic,
                error: &error,
            }
            .emit();
            delivery.fail_to_read_again(&topic, error);
        }
    }
    if let Some(hold) = hold {
        let mut hold = hold.borrow_mut();
        for (input, offset) in rewound {
            hold.forget(input, offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(partition: u16) -> InputPartition {
        InputPartition {
            topic: 0,
            partition,
        }
    }

    #[test]
    fn a_partition_the_abort_did_not_rewind_is_sought_back_to_its_first_dropped_event() {
        let mut read_again = ReadAgain::default();
        read_again.dropped(input(2), "events", 120);
        read_again.dropped(input(2), "events", 95);
        read_again.dropped(input(2), "events", 130);
        assert_eq!(
            read_again.seeks(&[(input(0), 40)]),
            vec![("events".to_owned(), 2, 95)]
        );
    }

    #[test]
    fn a_rewound_partition_with_dropped_events_is_sought_back_to_the_rewind_offset() {
        // Events 70.. were read again after the abort's own seek to 70, then dropped: the
        // consumer is past them, so only another seek reads them again.
        let mut read_again = ReadAgain::default();
        read_again.dropped(input(0), "events", 50);
        read_again.dropped(input(1), "events", 70);
        read_again.dropped(input(1), "events", 75);
        assert_eq!(
            read_again.seeks(&[(input(0), 40), (input(1), 70), (input(2), 5)]),
            vec![("events".to_owned(), 0, 40), ("events".to_owned(), 1, 70)]
        );
    }

    #[test]
    fn a_partition_rewound_past_its_first_dropped_event_is_sought_back_further() {
        let mut read_again = ReadAgain::default();
        read_again.dropped(input(0), "events", 30);
        assert_eq!(
            read_again.seeks(&[(input(0), 40)]),
            vec![("events".to_owned(), 0, 30)]
        );
    }

    #[test]
    fn partitions_of_different_topics_are_kept_apart() {
        let mut read_again = ReadAgain::default();
        let hold = InputPartition {
            topic: 1,
            partition: 0,
        };
        read_again.dropped(input(0), "events", 10);
        read_again.dropped(hold, "events.hold", 5);
        assert_eq!(
            read_again.seeks(&[(input(0), 10)]),
            vec![
                ("events".to_owned(), 0, 10),
                ("events.hold".to_owned(), 0, 5)
            ]
        );
    }
}
