//! Events read together, and under which assignments each was read.

use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::BorrowedMessage;

use super::rebalance::EventConsumerContext;
use crate::consent::follower::PendingSample;
use crate::delivery::Delivery;
use crate::internal_events::{self as events, InternalEvent};

/// Events read per turn of the loop before consent records, acknowledgements and commits
/// are served again.
pub const EVENTS_PER_TURN: usize = 1_000;

/// Events read together, judged together once the table has caught up with the consent
/// topic's end offsets sampled after they were read.
pub struct Batch<'c> {
    pub events: Vec<BorrowedMessage<'c>>,
    /// Requested once the consent partitions to follow are known for these events.
    pub sample: Option<PendingSample>,
    marks: AssignmentMarks,
}

impl<'c> Batch<'c> {
    /// Reads up to a turn's worth of events, waiting up to `wait` only for the first.
    pub fn read(
        consumer: &'c BaseConsumer<EventConsumerContext>,
        delivery: &Delivery,
        wait: Duration,
    ) -> Option<Batch<'c>> {
        let mut events = Vec::new();
        let mut marks = AssignmentMarks::default();
        let mut wait = wait;
        while events.len() < EVENTS_PER_TURN {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    if events.is_empty() {
                        events.reserve(EVENTS_PER_TURN);
                    }
                    // Rebalance callbacks run inside `poll`, before it returns a message.
                    marks.note(events.len(), delivery.inputs().made());
                    events.push(message);
                }
                Some(Err(error)) => {
                    events::InputReadFailed { error: &error }.emit();
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        (!events.is_empty()).then_some(Batch {
            events,
            sample: None,
            marks,
        })
    }

    /// Adds the events of `later`, read after these: the sample asked for these does not
    /// cover them, so a new one is to be asked for.
    pub fn extend(&mut self, later: Batch<'c>) {
        let offset = self.events.len();
        for (index, made) in later.marks.0 {
            self.marks.note(offset + index, made);
        }
        self.events.extend(later.events);
        self.sample = None;
    }

    /// Assignments numbered from the result on were made after the event at `index` was
    /// read: an event of such a partition was read under an earlier assignment, and the
    /// consumer reads it again from the committed offset.
    pub fn assignments_before(&self, index: usize) -> u64 {
        self.marks.before(index)
    }
}

/// For runs of events read under the same assignments: the index of the first, and the
/// number of assignments made when it was read. One run, unless a rebalance happened
/// inside a read.
#[derive(Debug, Default)]
struct AssignmentMarks(Vec<(usize, u64)>);

impl AssignmentMarks {
    fn note(&mut self, index: usize, assignments_made: u64) {
        if self
            .0
            .last()
            .is_none_or(|(_, made)| *made != assignments_made)
        {
            self.0.push((index, assignments_made));
        }
    }

    fn before(&self, index: usize) -> u64 {
        self.0
            .iter()
            .rev()
            .find(|(first, _)| *first <= index)
            .map_or(0, |(_, made)| *made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_before_a_rebalance_inside_a_read_keep_the_earlier_mark() {
        let mut marks = AssignmentMarks::default();
        for index in 0..3 {
            marks.note(index, 4);
        }
        // A partition revoked and assigned again (number 4) by the poll that read event 3.
        for index in 3..5 {
            marks.note(index, 5);
        }
        assert_eq!(marks.0.len(), 2);
        assert_eq!(marks.before(0), 4);
        assert_eq!(marks.before(2), 4);
        assert_eq!(marks.before(3), 5);
        assert_eq!(marks.before(4), 5);
    }

    #[test]
    fn extending_marks_keeps_each_runs_assignment() {
        let mut marks = AssignmentMarks::default();
        marks.note(0, 4);
        let later = AssignmentMarks(vec![(0, 4), (2, 6)]);
        for (index, made) in later.0 {
            marks.note(3 + index, made);
        }
        assert_eq!(marks.0, vec![(0, 4), (5, 6)]);
        assert_eq!(marks.before(4), 4);
        assert_eq!(marks.before(5), 6);
    }
}
