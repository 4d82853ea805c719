//! The delivery tag: a `usize` handed to librdkafka with each write and returned with its
//! acknowledgement, saying what the write was for. Packing it into an integer avoids an
//! allocation per write.
//!
//! Layout (64 bits): target (8) | input topic index (8) | input partition (16) | sequence (32).

use crate::event::Malformed;
pub use crate::input::InputPartition;

/// What a write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The event to a destination, by index in config order.
    Destination(u8),
    /// The event to the dead-letter topic.
    DeadLetter(Malformed),
    /// A newer consent state re-published to the consent topic (not tied to an input event).
    Republish,
    /// The event to the hold topic, to wait for the user's first choice.
    Hold,
    /// The consent a CMP's preference event carries, to the consent topic
    /// (`consent.learn_from_events`): tied to its event like the event's own writes.
    Learned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub target: Target,
    pub input: InputPartition,
    /// The event's sequence number within its input partition (wrapping).
    pub seq: u32,
}

const DEAD_LETTER_BASE: u8 = 200;
const LEARNED: u8 = 253;
const HOLD: u8 = 254;
const REPUBLISH: u8 = 255;

impl Tag {
    /// The tag of an override of a stale consent record: tied to no input partition.
    pub fn republish() -> Tag {
        Tag {
            target: Target::Republish,
            input: InputPartition {
                topic: 0,
                partition: 0,
            },
            seq: 0,
        }
    }

    pub fn encode(self) -> usize {
        let target = match self.target {
            Target::Destination(index) => index,
            Target::DeadLetter(reason) => {
                DEAD_LETTER_BASE
                    + Malformed::ALL
                        .iter()
                        .position(|r| *r == reason)
                        .unwrap_or(0) as u8
            }
            Target::Republish => REPUBLISH,
            Target::Hold => HOLD,
            Target::Learned => LEARNED,
        };
        let bits = (u64::from(target) << 56)
            | (u64::from(self.input.topic) << 48)
            | (u64::from(self.input.partition) << 32)
            | u64::from(self.seq);
        bits as usize
    }

    pub fn decode(tag: usize) -> Tag {
        let bits = tag as u64;
        let target = (bits >> 56) as u8;
        let target = match target {
            REPUBLISH => Target::Republish,
            HOLD => Target::Hold,
            LEARNED => Target::Learned,
            t if t >= DEAD_LETTER_BASE => Target::DeadLetter(
                Malformed::ALL[usize::from(t - DEAD_LETTER_BASE).min(Malformed::ALL.len() - 1)],
            ),
            t => Target::Destination(t),
        };
        Tag {
            target,
            input: InputPartition {
                topic: (bits >> 48) as u8,
                partition: (bits >> 32) as u16,
            },
            seq: bits as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_round_trips() {
        let input = InputPartition {
            topic: 7,
            partition: 65_535,
        };
        let mut targets = vec![
            Target::Republish,
            Target::Hold,
            Target::Learned,
            Target::Destination(0),
            Target::Destination(199),
        ];
        targets.extend(Malformed::ALL.map(Target::DeadLetter));
        for target in targets {
            let tag = Tag {
                target,
                input,
                seq: u32::MAX,
            };
            assert_eq!(Tag::decode(tag.encode()), tag);
        }
    }
}
