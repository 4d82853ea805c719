//! With `[privacy]`: held events taken from the hold wait here until the privacy topic has
//! been read up to its end offsets sampled after they were taken, so that a suppression
//! acknowledged before their user's choice was applied is applied before they are judged.
//! (A batch of events read waits for the same sample in `Freshness`; a release is not a
//! batch read, and would otherwise be judged with whatever the privacy view holds.)
//! Batches leave in the order they came, so exactly-once's resolution order is kept.

use std::collections::VecDeque;

use super::Waiting;
use crate::consent::follower::PendingSample;
use crate::input::InputPartition;

#[derive(Default)]
pub struct ReleaseGate {
    batches: VecDeque<(Vec<Waiting>, PendingSample)>,
}

impl ReleaseGate {
    pub fn push(&mut self, events: Vec<Waiting>, sample: PendingSample) {
        if !events.is_empty() {
            self.batches.push_back((events, sample));
        }
    }

    /// The oldest batch, with its sample.
    pub fn front_mut(&mut self) -> Option<&mut (Vec<Waiting>, PendingSample)> {
        self.batches.front_mut()
    }

    pub fn pop(&mut self) -> Option<Vec<Waiting>> {
        self.batches.pop_front().map(|(events, _)| events)
    }

    /// Forgets the events that `forget` matches (read again, or another instance's now).
    pub fn forget(&mut self, forget: impl Fn(&Waiting) -> bool) {
        for (events, _) in &mut self.batches {
            events.retain(|event| !forget(event));
        }
        self.batches.retain(|(events, _)| !events.is_empty());
    }

    pub fn forget_from(&mut self, input: InputPartition, from_offset: i64) {
        self.forget(|w| w.input == input && w.offset >= from_offset);
    }
}
