//! Which input offsets may be committed: an offset is committable once every write for its
//! event, and for every earlier event of its partition, has been acknowledged.

use std::collections::{HashMap, VecDeque};

use super::tag::InputPartition;

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    /// Writes sent for this event and not yet acknowledged.
    pending: u32,
    /// A write of this event failed for good: it will never be done.
    failed: bool,
    /// Held: waiting for the user's first choice; done once released or expired.
    parked: bool,
    /// Still being judged: more writes may come. Not done before [`Progress::end`], however
    /// many of the writes sent so far are acknowledged.
    open: bool,
}

#[derive(Debug, Default)]
struct PartitionProgress {
    /// Sequence number of `entries[0]`; entries are numbered consecutively (wrapping).
    front_seq: u32,
    entries: VecDeque<Entry>,
    /// The next offset to consume once everything before it is done: what a commit stores.
    committable: Option<i64>,
    committed: Option<i64>,
    /// A write of this partition failed for good: nothing past it may be committed.
    failed: bool,
}

impl PartitionProgress {
    fn settle(&mut self) {
        while let Some(front) = self.entries.front() {
            if front.pending > 0 || front.failed || front.parked || front.open {
                break;
            }
            self.committable = Some(front.offset + 1);
            self.entries.pop_front();
            self.front_seq = self.front_seq.wrapping_add(1);
        }
    }

    fn entry(&mut self, seq: u32) -> Option<&mut Entry> {
        let index = seq.wrapping_sub(self.front_seq) as usize;
        self.entries.get_mut(index)
    }

    fn in_flight(&self) -> usize {
        self.entries.iter().map(|e| e.pending as usize).sum()
    }
}

/// Progress of every input partition this instance owns.
#[derive(Debug, Default)]
pub struct Progress {
    partitions: HashMap<InputPartition, PartitionProgress>,
    in_flight: usize,
    /// The next sequence number of each partition no longer tracked: a partition assigned
    /// again goes on from it, so a late acknowledgement of a write from its earlier
    /// assignment (a drain that timed out) can never credit an event of the new one.
    retired: HashMap<InputPartition, u32>,
}

impl Progress {
    /// Starts tracking an event; returns its sequence number for the tags of its writes.
    pub fn begin(&mut self, input: InputPartition, offset: i64) -> u32 {
        let retired = &mut self.retired;
        let partition = self
            .partitions
            .entry(input)
            .or_insert_with(|| PartitionProgress {
                front_seq: retired.remove(&input).unwrap_or(0),
                ..PartitionProgress::default()
            });
        let seq = partition
            .front_seq
            .wrapping_add(partition.entries.len() as u32);
        partition.entries.push_back(Entry {
            offset,
            pending: 0,
            failed: false,
            parked: false,
            open: true,
        });
        seq
    }

    /// Parks the event numbered `seq`: it is not done until [`unpark`]ed, and nothing after
    /// it on its partition can be committed before.
    ///
    /// [`unpark`]: Progress::unpark
    pub fn park(&mut self, input: InputPartition, seq: u32) {
        if let Some(entry) = self.partitions.get_mut(&input).and_then(|p| p.entry(seq)) {
            entry.parked = true;
        }
    }

    /// Counts one more write for the event numbered `seq` (a parked one included).
    pub fn add_write_to(&mut self, input: InputPartition, seq: u32) {
        if let Some(entry) = self.partitions.get_mut(&input).and_then(|p| p.entry(seq)) {
            entry.pending += 1;
            self.in_flight += 1;
        }
    }

    /// A parked event is resolved (its writes, if any, counted already).
    pub fn unpark(&mut self, input: InputPartition, seq: u32) {
        if let Some(partition) = self.partitions.get_mut(&input) {
            if let Some(entry) = partition.entry(seq) {
                entry.parked = false;
            }
            partition.settle();
        }
    }

    /// Every write of the event numbered `seq` is sent: it is done once they are
    /// acknowledged (at once, with none).
    pub fn end(&mut self, input: InputPartition, seq: u32) {
        if let Some(partition) = self.partitions.get_mut(&input) {
            if let Some(entry) = partition.entry(seq) {
                entry.open = false;
            }
            partition.settle();
        }
    }

    /// A write was acknowledged. Unknown partitions (already revoked) are ignored.
    pub fn acknowledge(&mut self, input: InputPartition, seq: u32) {
        let Some(partition) = self.partitions.get_mut(&input) else {
            return;
        };
        if let Some(entry) = partition.entry(seq) {
            if entry.pending > 0 {
                entry.pending -= 1;
                self.in_flight -= 1;
            }
        }
        partition.settle();
    }

    /// A write failed for good: the partition's committable offset stays before the event.
    pub fn fail(&mut self, input: InputPartition, seq: u32) {
        let Some(partition) = self.partitions.get_mut(&input) else {
            return;
        };
        partition.failed = true;
        if let Some(entry) = partition.entry(seq) {
            entry.failed = true;
            if entry.pending > 0 {
                entry.pending -= 1;
                self.in_flight -= 1;
            }
        }
    }

    /// A write of the event numbered `seq` could not even be sent.
    pub fn fail_unsent(&mut self, input: InputPartition, seq: u32) {
        if let Some(partition) = self.partitions.get_mut(&input) {
            partition.failed = true;
            if let Some(entry) = partition.entry(seq) {
                entry.failed = true;
            }
        }
    }

    /// Writes sent and not yet acknowledged, on the given partitions or on all.
    pub fn in_flight(&self, only: Option<&[InputPartition]>) -> usize {
        match only {
            None => self.in_flight,
            Some(inputs) => inputs
                .iter()
                .filter_map(|input| self.partitions.get(input))
                .map(PartitionProgress::in_flight)
                .sum(),
        }
    }

    /// Offsets to commit: partitions whose committable offset moved since the last commit.
    pub fn to_commit(&self, only: Option<&[InputPartition]>) -> Vec<(InputPartition, i64)> {
        self.partitions
            .iter()
            .filter(|(input, _)| only.is_none_or(|inputs| inputs.contains(input)))
            .filter_map(|(input, p)| match (p.committable, p.committed) {
                (Some(next), Some(done)) if next <= done => None,
                (Some(next), _) => Some((*input, next)),
                (None, _) => None,
            })
            .collect()
    }

    pub fn mark_committed(&mut self, input: InputPartition, offset: i64) {
        if let Some(partition) = self.partitions.get_mut(&input) {
            partition.committed = Some(partition.committed.map_or(offset, |c| c.max(offset)));
        }
    }

    /// Makes the next `to_commit` include `input` again (after a failed commit).
    pub fn forget_commit(&mut self, input: InputPartition) {
        if let Some(partition) = self.partitions.get_mut(&input) {
            partition.committed = None;
        }
    }

    /// Forgets the events of `input` from `offset` on (their transaction was aborted and they
    /// will be read again), keeping earlier ones and what was committed.
    pub fn forget_from(&mut self, input: InputPartition, offset: i64) {
        if let Some(partition) = self.partitions.get_mut(&input) {
            while partition.entries.back().is_some_and(|e| e.offset >= offset) {
                if let Some(entry) = partition.entries.pop_back() {
                    self.in_flight -= entry.pending as usize;
                }
            }
            // Events from `offset` on were settled, maybe, but their writes are gone.
            partition.committable = partition.committable.map(|c| c.min(offset));
            partition.failed = partition.entries.iter().any(|e| e.failed);
        }
    }

    /// Stops tracking partitions that were revoked.
    pub fn remove(&mut self, inputs: &[InputPartition]) {
        for input in inputs {
            if let Some(partition) = self.partitions.remove(input) {
                self.in_flight -= partition.in_flight();
                let next = partition
                    .front_seq
                    .wrapping_add(partition.entries.len() as u32);
                self.retired.insert(*input, next);
            }
        }
    }

    pub fn any_failed(&self) -> bool {
        self.partitions.values().any(|p| p.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: InputPartition = InputPartition {
        topic: 0,
        partition: 3,
    };

    fn event(progress: &mut Progress, offset: i64, writes: u32) -> u32 {
        let seq = progress.begin(P, offset);
        for _ in 0..writes {
            progress.add_write_to(P, seq);
        }
        progress.end(P, seq);
        seq
    }

    #[test]
    fn event_without_writes_is_committable_at_once() {
        let mut progress = Progress::default();
        event(&mut progress, 10, 0);
        assert_eq!(progress.to_commit(None), vec![(P, 11)]);
    }

    #[test]
    fn offset_waits_for_every_write_of_the_event() {
        let mut progress = Progress::default();
        let seq = event(&mut progress, 10, 2);
        assert_eq!(progress.to_commit(None), vec![]);
        progress.acknowledge(P, seq);
        assert_eq!(progress.to_commit(None), vec![]);
        progress.acknowledge(P, seq);
        assert_eq!(progress.to_commit(None), vec![(P, 11)]);
        assert_eq!(progress.in_flight(None), 0);
    }

    #[test]
    fn later_event_waits_for_earlier_ones() {
        let mut progress = Progress::default();
        let first = event(&mut progress, 10, 1);
        let second = event(&mut progress, 12, 1);
        progress.acknowledge(P, second);
        assert_eq!(progress.to_commit(None), vec![]);
        progress.acknowledge(P, first);
        assert_eq!(progress.to_commit(None), vec![(P, 13)]);
    }

    #[test]
    fn failed_write_blocks_the_partition() {
        let mut progress = Progress::default();
        let first = event(&mut progress, 10, 1);
        let second = event(&mut progress, 11, 1);
        progress.fail(P, first);
        progress.acknowledge(P, second);
        assert_eq!(progress.to_commit(None), vec![]);
        assert!(progress.any_failed());
        assert_eq!(progress.in_flight(None), 0);
    }

    #[test]
    fn write_that_could_not_be_sent_blocks_the_partition() {
        let mut progress = Progress::default();
        let seq = progress.begin(P, 10);
        progress.fail_unsent(P, seq);
        progress.end(P, seq);
        assert_eq!(progress.to_commit(None), vec![]);
    }

    #[test]
    fn an_event_is_not_done_while_its_writes_are_still_being_sent() {
        // Its first write waits on a full producer queue while an acknowledgement of an
        // earlier event settles the partition: the event must not be popped as done.
        let mut progress = Progress::default();
        let earlier = event(&mut progress, 9, 1);
        let seq = progress.begin(P, 10);
        progress.acknowledge(P, earlier);
        assert_eq!(progress.to_commit(None), vec![(P, 10)]);
        progress.add_write_to(P, seq);
        progress.add_write_to(P, seq);
        progress.acknowledge(P, seq);
        progress.end(P, seq);
        assert_eq!(progress.to_commit(None), vec![(P, 10)]);
        assert_eq!(progress.in_flight(None), 1);
        progress.acknowledge(P, seq);
        assert_eq!(progress.to_commit(None), vec![(P, 11)]);
    }

    #[test]
    fn a_send_failing_for_an_earlier_event_marks_that_event_not_the_last() {
        let mut progress = Progress::default();
        let held = progress.begin(P, 10);
        progress.park(P, held);
        progress.end(P, held);
        let last = event(&mut progress, 11, 1);
        progress.fail_unsent(P, held);
        progress.unpark(P, held);
        progress.acknowledge(P, last);
        assert_eq!(progress.to_commit(None), vec![]);
    }

    #[test]
    fn a_late_acknowledgement_from_an_earlier_assignment_credits_nothing() {
        let mut progress = Progress::default();
        let old = event(&mut progress, 10, 1);
        // Revoked before the write was acknowledged, then assigned again.
        progress.remove(&[P]);
        let new = event(&mut progress, 10, 1);
        assert_ne!(old, new);
        progress.acknowledge(P, old);
        assert_eq!(progress.to_commit(None), vec![]);
        assert_eq!(progress.in_flight(None), 1);
        progress.acknowledge(P, new);
        assert_eq!(progress.to_commit(None), vec![(P, 11)]);
    }

    #[test]
    fn parked_event_blocks_later_offsets_until_unparked() {
        let mut progress = Progress::default();
        let parked = progress.begin(P, 10);
        progress.park(P, parked);
        progress.end(P, parked);
        event(&mut progress, 11, 0);
        assert_eq!(progress.to_commit(None), vec![]);
        progress.add_write_to(P, parked);
        progress.unpark(P, parked);
        assert_eq!(progress.to_commit(None), vec![]);
        progress.acknowledge(P, parked);
        assert_eq!(progress.to_commit(None), vec![(P, 12)]);
    }

    #[test]
    fn forgetting_from_an_offset_keeps_earlier_events() {
        let mut progress = Progress::default();
        let first = event(&mut progress, 10, 1);
        event(&mut progress, 11, 1);
        event(&mut progress, 12, 1);
        progress.forget_from(P, 11);
        assert_eq!(progress.in_flight(None), 1);
        progress.acknowledge(P, first);
        assert_eq!(progress.to_commit(None), vec![(P, 11)]);
        // The next event begun gets the next sequence number after the kept ones.
        assert_eq!(progress.begin(P, 11), first.wrapping_add(1));
    }

    #[test]
    fn forgetting_settled_events_takes_back_their_offsets() {
        let mut progress = Progress::default();
        let first = event(&mut progress, 10, 1);
        let second = event(&mut progress, 11, 1);
        progress.acknowledge(P, first);
        progress.acknowledge(P, second);
        assert_eq!(progress.to_commit(None), vec![(P, 12)]);
        progress.forget_from(P, 11);
        assert_eq!(progress.to_commit(None), vec![(P, 11)]);
    }

    #[test]
    fn committed_offsets_are_not_committed_again() {
        let mut progress = Progress::default();
        event(&mut progress, 10, 0);
        progress.mark_committed(P, 11);
        assert_eq!(progress.to_commit(None), vec![]);
        progress.forget_commit(P);
        assert_eq!(progress.to_commit(None), vec![(P, 11)]);
    }

    #[test]
    fn sequence_numbers_survive_wrapping() {
        let mut progress = Progress::default();
        progress.partitions.entry(P).or_default().front_seq = u32::MAX;
        let first = event(&mut progress, 1, 1);
        let second = event(&mut progress, 2, 1);
        assert_eq!((first, second), (u32::MAX, 0));
        progress.acknowledge(P, first);
        progress.acknowledge(P, second);
        assert_eq!(progress.to_commit(None), vec![(P, 3)]);
    }
}
