//! What consent records ask of the rest of the pipeline ([`ConsentEffects`]): finish the
//! writes judged before a revocation, release held events of a user who chose, and write
//! overrides of stale consent records.

use std::cell::RefCell;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::hold::Hold;
use super::rebalance::EventConsumerContext;
use crate::config::ConsentFormat;
use crate::consent::follower::ConsentEffects;
use crate::consent::record::{encode_protobuf, encode_value};
use crate::consent::republish::{Override, REPUBLISHED_HEADER};
use crate::consent::ConsentState;
use crate::delivery::exactly_once::Rewound;
use crate::delivery::tag::{InputPartition, Tag};
use crate::delivery::{commits, Delivery};
use crate::privacy::Deletion;
use crate::vocabulary::Vocabulary;

/// What consent records ask of delivery: finish earlier writes before a revocation, and
/// write newer states back after a stale record.
pub(super) struct Effects<'a> {
    pub(super) delivery: &'a Delivery,
    pub(super) vocabulary: &'a Vocabulary,
    pub(super) consent_topic: &'a str,
    /// Overrides written from the table are encoded as `consent.format` reads them.
    pub(super) consent_format: ConsentFormat,
    /// Each destination's name and `deletion_topic`, for those that have one.
    pub(super) deletion_topics: Vec<(&'a str, &'a str)>,
    pub(super) privacy_topic: Option<&'a str>,
    pub(super) drain_timeout: Duration,
    /// The event consumer, once events are judged (exactly-once commits need its group).
    pub(super) consumer: Option<&'a BaseConsumer<EventConsumerContext>>,
    pub(super) hold: Option<&'a RefCell<Hold>>,
    pub(super) republisher: Republisher,
    /// Where a transaction aborted before a revocation rewound the consumer to, until the
    /// loop takes it.
    pub(super) rewound: Rewound,
}

/// The Kafka timestamp of an override: never earlier than its state's own time (read back
/// with an earlier one, a state from a clock ahead of this one would be capped, seem stale,
/// and be overridden again), and now for a failed-closed state (whose time is the largest
/// there is, which a broker refuses; its override reads back failed closed at any time).
fn override_timestamp(state: ConsentState, now_ms: i64) -> i64 {
    if state.is_failed_closed() {
        now_ms
    } else {
        now_ms.max(state.updated_at_ms)
    }
}

/// Which instance re-publishes for a consent partition `p`: the owner of partition `p mod n`
/// of the first input topic, `n` its partition count, so that every consent partition has
/// one owner whatever the two counts (in co-partitioned mode they are equal: the owner of
/// input partition `p`, one of the instances following consent partition `p`, of which
/// there can be several with several input topics).
#[derive(Clone, Copy)]
pub(super) struct Republisher {
    pub(super) first_input_partitions: i32,
}

impl ConsentEffects for Effects<'_> {
    fn before_revocation(&mut self) -> bool {
        commits::before_revocation(
            self.delivery,
            self.consumer,
            self.drain_timeout,
            &mut self.rewound,
        )
    }

    fn applied(&mut self, user: &str) {
        if let Some(hold) = self.hold {
            hold.borrow_mut().consent_applied(user);
        }
    }

    fn republish(&mut self, user: &str, partition: i32, record: Override) {
        let (value, headers, state) = match record {
            Override::State(state) => {
                let (value, content_type) = match self.consent_format {
                    ConsentFormat::Protobuf => (
                        encode_protobuf(&state, self.vocabulary),
                        "application/x-protobuf",
                    ),
                    ConsentFormat::Json | ConsentFormat::Auto => {
                        (encode_value(&state, self.vocabulary), "application/json")
                    }
                };
                let headers = OwnedHeaders::new().insert(Header {
                    key: "content-type",
                    value: Some(content_type),
                });
                (value, Some(headers), state)
            }
            Override::Copy { record, state } => (record.value, record.headers, state),
        };
        let headers = headers.unwrap_or_default().insert(Header {
            key: REPUBLISHED_HEADER,
            value: Some("stale-record-superseded"),
        });
        let timestamp = override_timestamp(state, crate::clock::now_ms());
        let record = BaseRecord::with_opaque_to(self.consent_topic, Tag::republish().encode())
            .partition(partition)
            .key(user.as_bytes())
            .payload(value.as_slice())
            .timestamp(timestamp)
            .headers(headers);
        // A failure is recorded by `send` and stops the service.
        let _ = self.delivery.send(record);
    }

    fn republishes_for(&self, partition: i32) -> bool {
        let first = partition.rem_euclid(self.republisher.first_input_partitions);
        u16::try_from(first).is_ok_and(|partition| {
            self.delivery
                .inputs()
                .assignment(InputPartition {
                    topic: 0,
                    partition,
                })
                .is_some()
        })
    }

    fn ownership_version(&self) -> u64 {
        self.delivery.inputs().version()
    }

    fn delete(&mut self, user: &str, deletion: &Deletion) -> bool {
        let json = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some("application/json"),
        });
        for (destination, topic) in &self.deletion_topics {
            let value = deletion.record(user, destination);
            let record = BaseRecord::with_opaque_to(topic, Tag::republish().encode())
                .key(user.as_bytes())
                .payload(value.as_slice())
                .headers(json.clone());
            // A failure is recorded by `send` and stops the service.
            let _ = self.delivery.send(record);
        }
        let tombstone = BaseRecord::<[u8], [u8], usize>::with_opaque_to(
            self.consent_topic,
            Tag::republish().encode(),
        )
        .key(user.as_bytes());
        let _ = self.delivery.send(tombstone);
        // Acknowledged before the request is marked done, so that a crash in between writes
        // them again rather than never. (They go by the producer of re-published states,
        // outside any transaction: at least once in either mode.)
        while !self.delivery.drain(None, self.drain_timeout) {
            if self.delivery.failure().is_some() || self.delivery.stopping() {
                return false;
            }
        }
        // A write that failed meanwhile stops the service: never mark the request done then.
        if self.delivery.failure().is_some() {
            return false;
        }
        if let (Some(privacy_topic), Some(done)) = (self.privacy_topic, &deletion.done) {
            let done = BaseRecord::with_opaque_to(privacy_topic, Tag::republish().encode())
                .partition(deletion.partition)
                .key(user.as_bytes())
                .payload(done.as_slice());
            let _ = self.delivery.send(done);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::CategorySet;

    #[test]
    fn an_override_is_stamped_no_earlier_than_its_state_and_never_at_the_end_of_time() {
        let state = |updated_at_ms| ConsentState {
            granted: CategorySet::from_bits(1),
            updated_at_ms,
        };
        assert_eq!(override_timestamp(state(10), 20), 20);
        assert_eq!(override_timestamp(state(30), 20), 30);
        assert_eq!(override_timestamp(ConsentState::FAILED_CLOSED, 20), 20);
    }
}
