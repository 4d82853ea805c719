//! Reads back, on a thread of its own, the consent record that set a user's current state, so
//! that the override written after a stale record is a copy of that record (with the fields
//! the enforcer does not read: consent evidence a CMP wrote) rather than a re-encoding of
//! the table's state, which keeps only grants and a time.
//!
//! The record is found from the state's `updatedAt`: a record's Kafka timestamp is never
//! earlier than the `updatedAt` it is applied with (a later one is capped at it), so the
//! first offset with a timestamp at or after `updatedAt` is at or before the record. From
//! there the partition is read up to the stale record, within a budget; the last record of
//! the user that reads back as exactly the stored state is the copy. Not found (compacted
//! away, beyond the budget, a record whose state depends on its own timestamp), the caller
//! re-encodes the state: the override is still correct, only the extra fields are lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};

use super::record::{content_type, read_value, Encoding};
use super::{ConsentState, ConsentUpdate};
use crate::config::ConsentFormat;
use crate::delivery::headers::without_reserved;
use crate::kafka::KafkaContext;
use crate::vocabulary::Vocabulary;

/// At most this many records are read for one lookup.
const MAX_SCANNED: usize = 100_000;
/// At most this long is spent on one lookup.
const MAX_TIME: Duration = Duration::from_secs(2);
/// The longest single wait, so that a stop is noticed soon.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// The record to find: the last one of `user` in `partition` before offset `before` (the
/// stale record) that reads back as `state`.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub partition: i32,
    pub user: Box<str>,
    pub state: ConsentState,
    pub before: i64,
}

/// A consent record's value and headers (those of reserved names left out, the others byte
/// for byte), to write again.
#[derive(Debug)]
pub struct CopiedRecord {
    pub value: Vec<u8>,
    pub headers: Option<OwnedHeaders>,
}

/// What a lookup found.
#[derive(Debug)]
pub struct Found {
    pub lookup: Lookup,
    pub record: Option<CopiedRecord>,
}

pub struct Lookback {
    requests: Option<mpsc::Sender<Lookup>>,
    answers: mpsc::Receiver<Found>,
    stop: Arc<AtomicBool>,
    pending: usize,
}

impl Lookback {
    pub fn start(
        client: BaseConsumer<KafkaContext>,
        topic: String,
        vocabulary: Arc<Vocabulary>,
        format: ConsentFormat,
    ) -> std::io::Result<Lookback> {
        let (requests, incoming) = mpsc::channel::<Lookup>();
        let (answer, answers) = mpsc::channel::<Found>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        // Not joined on drop: a lookup waiting for an unanswering broker must not hold up a
        // stop bound by its deadline. The thread ends after the lookup it is on.
        std::thread::Builder::new()
            .name("consent-lookback".to_owned())
            .spawn(move || {
                while let Ok(lookup) = incoming.recv() {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    let record = find(&client, &topic, &lookup, (&vocabulary, format), &stopping)
                        .unwrap_or_else(|error| {
                            tracing::debug!(%error, "reading a consent record back failed");
                            None
                        });
                    if answer.send(Found { lookup, record }).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Lookback {
            requests: Some(requests),
            answers,
            stop,
            pending: 0,
        })
    }

    /// A lookback whose requests and answers are the caller's to serve (tests).
    #[cfg(test)]
    pub fn served_by_caller() -> (Lookback, mpsc::Receiver<Lookup>, mpsc::Sender<Found>) {
        let (requests, incoming) = mpsc::channel();
        let (answer, answers) = mpsc::channel();
        let lookback = Lookback {
            requests: Some(requests),
            answers,
            stop: Arc::new(AtomicBool::new(false)),
            pending: 0,
        };
        (lookback, incoming, answer)
    }

    /// Asks for `lookup`; false if the thread is gone (the caller re-encodes instead).
    pub fn request(&mut self, lookup: Lookup) -> bool {
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|requests| requests.send(lookup).is_ok());
        if sent {
            self.pending += 1;
        }
        sent
    }

    /// The lookups answered since the last call, and whether the thread is gone (nothing
    /// more will be answered).
    pub fn answered(&mut self) -> (Vec<Found>, bool) {
        let mut found = Vec::new();
        let gone = loop {
            match self.answers.try_recv() {
                Ok(answer) => found.push(answer),
                Err(mpsc::TryRecvError::Empty) => break false,
                Err(mpsc::TryRecvError::Disconnected) => break true,
            }
        };
        self.pending = self.pending.saturating_sub(found.len());
        (found, gone)
    }

    /// Lookups asked for and not answered yet.
    pub fn pending(&self) -> usize {
        self.pending
    }
}

impl Drop for Lookback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.requests = None;
    }
}

fn find(
    client: &BaseConsumer<KafkaContext>,
    topic: &str,
    lookup: &Lookup,
    (vocabulary, format): (&Vocabulary, ConsentFormat),
    stopping: &AtomicBool,
) -> Result<Option<CopiedRecord>, KafkaError> {
    let deadline = Instant::now() + MAX_TIME;
    let mut query = TopicPartitionList::with_capacity(1);
    query.add_partition_offset(
        topic,
        lookup.partition,
        Offset::Offset(lookup.state.updated_at_ms),
    )?;
    let answer = client.offsets_for_times(query, MAX_TIME)?;
    let start = match answer
        .find_partition(topic, lookup.partition)
        .map(|element| element.offset())
    {
        Some(Offset::Offset(start)) if start < lookup.before => start,
        _ => return Ok(None),
    };
    let mut from = TopicPartitionList::with_capacity(1);
    from.add_partition_offset(topic, lookup.partition, Offset::Offset(start))?;
    client.assign(&from)?;
    let mut found = None;
    let mut scanned = 0;
    while scanned < MAX_SCANNED && !stopping.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match client.poll(left.min(POLL_SLICE)) {
            None => {}
            Some(Ok(message)) => {
                if message.offset() >= lookup.before {
                    break;
                }
                scanned += 1;
                if message.key() == Some(lookup.user.as_bytes())
                    && reads_back_as(
                        message.payload(),
                        content_type(message.headers()),
                        lookup.state,
                        (vocabulary, format),
                    )
                {
                    found = Some(copy(&message));
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(error)) => {
                let _ = client.unassign();
                return Err(error);
            }
        }
    }
    client.unassign()?;
    Ok(found)
}

/// Whether `value` stands for `state` on its own: with an `updatedAt` of its own, so that a
/// copy written later (with a later timestamp) is applied as the same state.
fn reads_back_as(
    value: Option<&[u8]>,
    content_type: Option<&[u8]>,
    state: ConsentState,
    (vocabulary, format): (&Vocabulary, ConsentFormat),
) -> bool {
    let encoding = Encoding::of(format, content_type, value);
    read_value(value, encoding, i64::MAX, vocabulary).update == Ok(ConsentUpdate::Set(state))
}

fn copy(message: &rdkafka::message::BorrowedMessage<'_>) -> CopiedRecord {
    CopiedRecord {
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers: without_reserved(message.headers()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::CategorySet;

    fn vocabulary() -> Vocabulary {
        let config = crate::config::Config::parse(
            "[kafka]\nbootstrap_servers = \"x:9092\"\n[input]\ntopics = [\"in\"]\n\
             [consent]\ntopic = \"c\"\n[dead_letter]\ntopic = \"d\"\n\
             [[destination]]\nname = \"a\"\ntopic = \"a\"\ncategories = [\"analytics\"]\n",
            "test",
        )
        .expect("config");
        Vocabulary::from_config(&config)
    }

    #[test]
    fn only_a_record_with_its_own_updated_at_reads_back_as_the_stored_state() {
        let vocabulary = vocabulary();
        let state = ConsentState {
            granted: CategorySet::from_bits(0),
            updated_at_ms: 1_795_348_800_000,
        };
        let with_time = br#"{"categoryPreferences":{"analytics":false,"x":true},"updatedAt":"2026-11-22T12:00:00Z","consentId":"abc"}"#;
        assert!(reads_back_as(
            Some(with_time),
            None,
            state,
            (&vocabulary, ConsentFormat::Json)
        ));
        let without_time = br#"{"categoryPreferences":{"analytics":false}}"#;
        assert!(!reads_back_as(
            Some(without_time),
            None,
            state,
            (&vocabulary, ConsentFormat::Json)
        ));
        let other =
            br#"{"categoryPreferences":{"analytics":true},"updatedAt":"2026-11-22T12:00:00Z"}"#;
        assert!(!reads_back_as(
            Some(other),
            None,
            state,
            (&vocabulary, ConsentFormat::Json)
        ));
        assert!(!reads_back_as(
            None,
            None,
            state,
            (&vocabulary, ConsentFormat::Json)
        ));
    }
}
