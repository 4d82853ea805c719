//! Writing records to topics and reading them back.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::broker::{bootstrap, plain_consumer, WAIT};
use super::offsets::end_offsets;

/// Another writer of `topic` that opens a transaction there, writes one record in it and
/// leaves it open: everything written to that partition after it sits above the last stable
/// offset until the transaction ends (`abort_transaction` on the returned producer).
pub fn leave_a_transaction_open(topic: &str, transactional_id: &str) -> BaseProducer {
    let writer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("transactional.id", transactional_id)
        .create()
        .expect("transactional producer");
    writer.init_transactions(WAIT).expect("init_transactions");
    writer.begin_transaction().expect("begin_transaction");
    writer
        .send(BaseRecord::<str, str>::to(topic).key("other").payload("{}"))
        .map_err(|(e, _)| e)
        .expect("enqueue");
    writer.flush(WAIT).expect("flush");
    writer
}

/// Writes one record to an explicit partition with a producer of its own (the shared one may
/// not know a partition just added) and waits for its acknowledgement.
pub fn produce_to_partition(topic: &str, partition: i32, key: &str, value: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("acks", "all")
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::<str, str>::to(topic)
                .partition(partition)
                .key(key)
                .payload(value),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    producer.flush(WAIT).expect("record acknowledged");
}

/// One producer for the whole test binary: creating one per write costs a connection.
pub fn producer() -> &'static BaseProducer {
    static PRODUCER: OnceLock<BaseProducer> = OnceLock::new();
    PRODUCER.get_or_init(|| {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("acks", "all")
            .set("linger.ms", "0")
            .create()
            .expect("producer")
    })
}

/// One record as a test writes or reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
    pub partition: i32,
    pub offset: i64,
}

impl Record {
    pub fn new(key: &str, value: &str) -> Record {
        Record {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn value_str(&self) -> String {
        self.value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    pub fn key_str(&self) -> String {
        self.key
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }
}

/// Writes records and waits until the broker acknowledged every one.
pub fn produce(topic: &str, records: &[Record]) {
    let producer = producer();
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut out: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        out.key = record.key.as_deref();
        out.payload = record.value.as_deref();
        out.timestamp = record.timestamp;
        if !record.headers.is_empty() {
            out.headers = Some(headers);
        }
        producer.send(out).map_err(|(e, _)| e).expect("enqueue");
    }
    // rdkafka's flush polls in 100 ms steps; this returns as soon as all are acknowledged.
    let deadline = Instant::now() + WAIT;
    while producer.in_flight_count() > 0 {
        assert!(Instant::now() < deadline, "records not acknowledged");
        producer.poll(Duration::from_millis(1));
    }
}

pub fn produce_one(topic: &str, key: &str, value: &str) {
    produce(topic, &[Record::new(key, value)]);
}

/// Writes a tombstone (null value).
pub fn produce_tombstone(topic: &str, key: &str) {
    produce(
        topic,
        &[Record {
            key: Some(key.as_bytes().to_vec()),
            ..Record::default()
        }],
    );
}

/// Every committed record of a topic, up to its end now, in partition then offset order.
pub fn read_all(topic: &str) -> Vec<Record> {
    read_all_as(topic, "read_committed")
}

/// Every record of a topic, those of aborted transactions included.
pub fn read_all_uncommitted(topic: &str) -> Vec<Record> {
    read_all_as(topic, "read_uncommitted")
}

fn read_all_as(topic: &str, isolation: &str) -> Vec<Record> {
    let ends = end_offsets(topic);
    let consumer = plain_consumer(isolation);
    let mut assignment = TopicPartitionList::new();
    for partition in ends.keys() {
        assignment
            .add_partition_offset(topic, *partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let mut remaining: HashMap<i32, i64> = ends.into_iter().filter(|(_, end)| *end > 0).collect();
    let deadline = Instant::now() + WAIT;
    while !remaining.is_empty() {
        assert!(
            Instant::now() < deadline,
            "could not read {topic} to its end"
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            // A partition whose last records are transaction markers never yields them.
            let positions = consumer.position().expect("position");
            for element in positions.elements() {
                if let Offset::Offset(position) = element.offset() {
                    if remaining
                        .get(&element.partition())
                        .is_some_and(|end| position >= *end)
                    {
                        remaining.remove(&element.partition());
                    }
                }
            }
            continue;
        };
        let message = message.expect("consume");
        // Names as bytes (rust-rdkafka's own iterator panics on one that is not UTF-8),
        // shown lossily.
        let headers = message
            .headers()
            .map(|h| {
                consent_enforcer::delivery::headers::raw(h)
                    .map(|header| {
                        let name = String::from_utf8_lossy(header.name).into_owned();
                        (name, header.value.map(<[u8]>::to_vec))
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(Record {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: message.timestamp().to_millis(),
            partition: message.partition(),
            offset: message.offset(),
        });
        if remaining
            .get(&message.partition())
            .is_some_and(|end| message.offset() + 1 >= *end)
        {
            remaining.remove(&message.partition());
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}
