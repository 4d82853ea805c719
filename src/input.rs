//! The input side: which partitions of the topics the group reads (the input topics, then the
//! hold topic) this instance owns, under which assignment, and how they are numbered.
//!
//! The rebalance callback writes this ledger; the loop reads it to tell an event read under
//! an earlier assignment of its partition (the consumer reads it again from the committed
//! offset) from one it owns, and to know which consent partitions to follow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::TopicPartitionList;

use crate::sync::lock;

/// An input partition: the index of its topic among the topics the group reads
/// (`input.topics`, then `hold.topic`), and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InputPartition {
    pub topic: u8,
    pub partition: u16,
}

/// The input partitions this instance owns, each with the number of its assignment (so that
/// state kept for an earlier assignment of the same partition can be told apart).
pub struct Assignments {
    topics: Vec<String>,
    assigned: Mutex<HashMap<InputPartition, u64>>,
    assignments: AtomicU64,
    changes: AtomicU64,
}

impl Assignments {
    /// `topics`: the topics the group reads, in the order their partitions are numbered.
    pub fn new(topics: Vec<String>) -> Assignments {
        Assignments {
            topics,
            assigned: Mutex::new(HashMap::new()),
            assignments: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        }
    }

    /// The name of an input partition's topic.
    pub fn topic_name(&self, input: InputPartition) -> &str {
        &self.topics[usize::from(input.topic)]
    }

    /// The tracked form of an input partition, if it is one of ours.
    pub fn input_partition(&self, topic: &str, partition: i32) -> Option<InputPartition> {
        let topic = self.topics.iter().position(|t| t == topic)?;
        Some(InputPartition {
            topic: u8::try_from(topic).ok()?,
            partition: u16::try_from(partition).ok()?,
        })
    }

    /// Every input partition in a list.
    pub fn input_partitions(&self, list: &TopicPartitionList) -> Vec<InputPartition> {
        list.elements()
            .iter()
            .filter_map(|e| self.input_partition(e.topic(), e.partition()))
            .collect()
    }

    /// Changes whenever partitions are assigned or unassigned.
    pub fn version(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// The partition numbers this instance owns in any input topic.
    pub fn partition_numbers(&self) -> Vec<i32> {
        let mut numbers: Vec<i32> = lock(&self.assigned)
            .keys()
            .map(|input| i32::from(input.partition))
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        numbers
    }

    /// Records newly assigned partitions.
    pub fn assign(&self, inputs: &[InputPartition]) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        let mut assigned = lock(&self.assigned);
        for input in inputs {
            let number = self.assignments.fetch_add(1, Ordering::SeqCst);
            assigned.insert(*input, number);
        }
    }

    /// Marks partitions as no longer owned.
    pub fn unassign(&self, inputs: &[InputPartition]) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        let mut assigned = lock(&self.assigned);
        for input in inputs {
            assigned.remove(input);
        }
    }

    /// How many assignments have been numbered so far: the next one gets this number.
    pub fn made(&self) -> u64 {
        self.assignments.load(Ordering::SeqCst)
    }

    /// True if this instance owns the partition now, under an assignment numbered below
    /// `before` (one made before some moment marked with [`Assignments::made`]).
    pub fn owned_under_assignment_before(&self, input: InputPartition, before: u64) -> bool {
        lock(&self.assigned)
            .get(&input)
            .is_some_and(|number| *number < before)
    }

    /// True if this instance owns the partition now.
    pub fn is_assigned(&self, input: InputPartition) -> bool {
        lock(&self.assigned).contains_key(&input)
    }

    /// The number of the partition's current assignment, if owned.
    pub fn assignment(&self, input: InputPartition) -> Option<u64> {
        lock(&self.assigned).get(&input).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_read_under_an_earlier_assignment_of_its_partition_is_not_owned() {
        let assignments = Assignments::new(vec!["events".to_owned()]);
        let input = InputPartition {
            topic: 0,
            partition: 3,
        };
        assignments.assign(&[input]);
        let read_at = assignments.made();
        assert!(assignments.owned_under_assignment_before(input, read_at));

        assignments.unassign(&[input]);
        assert!(!assignments.owned_under_assignment_before(input, read_at));

        // Assigned again after the read: the consumer reads it again from the committed
        // offset, so what was read before must not be judged as well.
        assignments.assign(&[input]);
        assert!(!assignments.owned_under_assignment_before(input, read_at));
        assert!(assignments.owned_under_assignment_before(input, assignments.made()));
    }
}
