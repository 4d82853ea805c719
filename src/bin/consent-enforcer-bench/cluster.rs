//! Talking to the benchmark's broker: topics, bulk writes, offsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub struct Cluster {
    pub bootstrap: String,
    admin: AdminClient<DefaultClientContext>,
    runtime: tokio::runtime::Runtime,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl Cluster {
    pub fn connect(bootstrap: &str) -> anyhow::Result<Cluster> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .context("admin client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Cluster {
            bootstrap: bootstrap.to_owned(),
            admin,
            runtime,
        })
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let results = self
            .runtime
            .block_on(self.admin.create_topics([&topic], &AdminOptions::new()))?;
        for result in results {
            if let Err((topic, error)) = result {
                bail!("creating {topic}: {error}");
            }
        }
        let consumer = self.consumer("bench-metadata")?;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let metadata = consumer.fetch_metadata(Some(name), Duration::from_secs(5))?;
            if metadata
                .topics()
                .iter()
                .any(|t| t.error().is_none() && t.partitions().len() == partitions as usize)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("topic {name} did not appear");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn delete_topics(&self, names: &[String]) {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let _ = self
            .runtime
            .block_on(self.admin.delete_topics(&names, &AdminOptions::new()));
    }

    pub fn consumer(&self, group: &str) -> anyhow::Result<BaseConsumer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted")
            .create()?)
    }

    pub fn producer(&self) -> anyhow::Result<BaseProducer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("acks", "all")
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.kbytes", "262144")
            .create()?)
    }

    pub fn end_offsets(&self, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
        let consumer = self.consumer("bench-offsets")?;
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32);
        let mut ends = HashMap::new();
        for partition in 0..partitions {
            let (_, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
            ends.insert(partition, high);
        }
        Ok(ends)
    }

    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> anyhow::Result<i64> {
        let consumer = self.consumer(group)?;
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(topic, partition);
        }
        let committed = consumer.committed_offsets(list, TIMEOUT)?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .sum())
    }
}

/// Sends records as fast as the producer takes them; waits for every acknowledgement.
pub fn send_all(
    producer: &BaseProducer,
    topic: &str,
    records: impl Iterator<Item = (String, Option<Vec<u8>>, Option<i64>)>,
) -> anyhow::Result<u64> {
    let mut count = 0;
    for (key, value, sent_at) in records {
        let headers = sent_at.map(|ms| {
            OwnedHeaders::new().insert(Header {
                key: "bench-sent-ms",
                value: Some(ms.to_string().as_bytes()),
            })
        });
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(key.as_str());
        record.payload = value.as_deref();
        record.headers = headers;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
        count += 1;
        // `poll(ZERO)` serves one delivery report event; once per record keeps up with them,
        // so acknowledged records leave librdkafka's queue and paced sends never wait on it.
        producer.poll(Duration::ZERO);
    }
    producer.flush(TIMEOUT)?;
    Ok(count)
}
