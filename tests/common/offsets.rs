//! The end offsets of topics and the offsets consumer groups have committed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::broker::{bootstrap, plain_consumer, WAIT};

/// The end offset of every partition of a topic.
pub fn end_offsets(topic: &str) -> HashMap<i32, i64> {
    // Asked again on an error: a broker just resumed or restarted can drop a connection.
    let deadline = Instant::now() + WAIT;
    loop {
        match try_end_offsets(topic) {
            Ok(ends) => return ends,
            Err(error) => {
                assert!(Instant::now() < deadline, "end offsets of {topic}: {error}");
                println!("end offsets of {topic}: {error}; asking again");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn try_end_offsets(topic: &str) -> KafkaResult<HashMap<i32, i64>> {
    let consumer = plain_consumer("read_committed");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata.topics()[0].partitions().len() as i32;
    (0..partitions)
        .map(|p| {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            Ok((p, high))
        })
        .collect()
}

/// The group's committed offset of every partition of a topic (absent: none committed).
pub fn committed_offsets(group: &str, topic: &str) -> HashMap<i32, i64> {
    try_committed_offsets(group, topic).expect("committed offsets")
}

/// `committed_offsets`, or the broker's error (a restarted broker answers "not coordinator"
/// or "coordinator loading" for a while).
pub fn try_committed_offsets(group: &str, topic: &str) -> KafkaResult<HashMap<i32, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        // Without RequireStable: a pending transactional commit (of a killed instance) would
        // otherwise make the broker answer "unstable" until the transaction times out.
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in end_offsets(topic).keys() {
        list.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(list, WAIT)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect())
}

/// Waits until `group` has committed the whole of `topic` as it is now.
pub fn wait_committed(group: &str, topic: &str) {
    if let Err(seen) = committed_by(group, topic, Instant::now() + WAIT) {
        panic!("group {group} did not commit {topic}: {seen}");
    }
}

/// Waits until `group` has committed the whole of `topic` as it is now, or `deadline`
/// passes; then says which end and committed offsets it saw last.
pub fn committed_by(group: &str, topic: &str, deadline: Instant) -> Result<(), String> {
    let ends = end_offsets(topic);
    loop {
        let committed = match try_committed_offsets(group, topic) {
            Ok(committed) => committed,
            Err(error) if Instant::now() < deadline => {
                println!("committed offsets of {group}: {error}; asking again");
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            Err(error) => return Err(format!("ends {ends:?}, committed offsets: {error}")),
        };
        let done = ends
            .iter()
            .all(|(p, end)| *end == 0 || committed.get(p).is_some_and(|c| c >= end));
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("ends {ends:?}, committed {committed:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
