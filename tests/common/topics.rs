//! Creating, configuring, growing and deleting topics, and the partition the Java client
//! picks for a key.

use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;

use super::broker::{admin, plain_consumer, runtime, WAIT};

pub fn create_topic(name: &str, partitions: i32, compacted: bool) {
    let configs: &[(&str, &str)] = if compacted {
        &[("cleanup.policy", "compact")]
    } else {
        &[]
    };
    create_topic_with(name, partitions, configs);
}

pub fn create_topic_with(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = runtime()
        .block_on(admin().create_topics([&topic], &AdminOptions::new()))
        .expect("create topic");
    for result in results {
        result.expect("topic created");
    }
    // Metadata propagates asynchronously, even on one broker.
    let deadline = Instant::now() + WAIT;
    let consumer = plain_consumer("read_committed");
    loop {
        if let Ok(metadata) = consumer.fetch_metadata(Some(name), Duration::from_secs(5)) {
            if metadata.topics().iter().any(|t| {
                t.name() == name
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
            }) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "topic {name} never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kafka's Java `Utils.murmur2`, which the default Java partitioner applies to keys.
pub fn java_murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

pub fn java_partition(key: &[u8], partitions: u32) -> i32 {
    ((java_murmur2(key) & 0x7fff_ffff) % partitions) as i32
}

/// Sets one config of an existing topic (the others return to their defaults).
pub fn set_topic_config(name: &str, key: &str, value: &str) {
    set_topic_configs(name, &[(key, value)]);
}

/// Sets a topic's configuration to exactly these keys: AlterConfigs replaces the whole
/// set, so every key the topic needs (`cleanup.policy` included) goes in one call.
pub fn set_topic_configs(name: &str, configs: &[(&str, &str)]) {
    let mut change = AlterConfig::new(ResourceSpecifier::Topic(name));
    for (key, value) in configs {
        change = change.set(key, value);
    }
    let results = runtime()
        .block_on(admin().alter_configs([&change], &AdminOptions::new()))
        .expect("alter topic config");
    for result in results {
        result.expect("topic config altered");
    }
}

/// Grows `name` to `total` partitions and waits until the broker's metadata shows them.
pub fn add_partitions(name: &str, total: usize) {
    let results = runtime()
        .block_on(
            admin().create_partitions([&NewPartitions::new(name, total)], &AdminOptions::new()),
        )
        .expect("create partitions");
    for result in results {
        result.expect("partitions created");
    }
    let deadline = Instant::now() + WAIT;
    let consumer = plain_consumer("read_committed");
    loop {
        if let Ok(metadata) = consumer.fetch_metadata(Some(name), Duration::from_secs(5)) {
            if metadata
                .topics()
                .iter()
                .any(|t| t.name() == name && t.partitions().len() == total)
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "partitions of {name} never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn delete_topic(name: &str) {
    let results = runtime()
        .block_on(admin().delete_topics(&[name], &AdminOptions::new()))
        .expect("delete topic");
    for result in results {
        result.expect("topic deleted");
    }
}
