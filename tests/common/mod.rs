//! Helpers shared by the broker-backed tests: the broker, random topics, producing and
//! reading records, and the enforcer as a child process.
//!
//! The broker is `CONSENT_ENFORCER_TEST_BOOTSTRAP` if set; otherwise the project's local
//! broker on 127.0.0.1:19092, started by `scripts/kafka.sh` if it is not running. The tests
//! never read `KAFKA_BOOTSTRAP_SERVERS`, so they cannot create topics on a cluster it points
//! at by chance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub const TEST_BOOTSTRAP_ENV: &str = "CONSENT_ENFORCER_TEST_BOOTSTRAP";
const LOCAL_TEST_PORT: &str = "19092";

/// Generous bound for anything that waits on the broker.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn bootstrap() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(servers) = std::env::var(TEST_BOOTSTRAP_ENV) {
            return servers;
        }
        kafka_script("fresh", LOCAL_TEST_PORT);
        format!("127.0.0.1:{LOCAL_TEST_PORT}")
    })
}

/// Runs `scripts/kafka.sh COMMAND` for the broker on 127.0.0.1:`port`; panics if it fails.
pub fn kafka_script(command: &str, port: &str) {
    kafka_script_with(command, port, &[]);
}

/// `kafka_script` with more environment for the script (e.g. `KAFKA_SECURE`); returns what it
/// printed on stdout.
pub fn kafka_script_with(command: &str, port: &str, env: &[(&str, &str)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg(command)
        .env("KAFKA_PORT", port)
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/kafka.sh");
    assert!(
        output.status.success(),
        "scripts/kafka.sh {command} failed for the broker on port {port}"
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client")
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

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

pub fn delete_topic(name: &str) {
    let results = runtime()
        .block_on(admin().delete_topics(&[name], &AdminOptions::new()))
        .expect("delete topic");
    for result in results {
        result.expect("topic deleted");
    }
}

fn plain_consumer(isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
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

/// A destination of a test scenario.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub topic: String,
    pub categories: Vec<String>,
    pub integration_names: Option<Vec<String>>,
    pub match_mode: &'static str,
    pub partitions: i32,
    /// Topic-level configs for the destination topic.
    pub topic_config: Vec<(&'static str, &'static str)>,
}

impl Destination {
    pub fn new(name: &str, categories: &[&str]) -> Destination {
        Destination {
            name: name.to_owned(),
            topic: String::new(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            integration_names: None,
            match_mode: "all",
            partitions: 1,
            topic_config: Vec::new(),
        }
    }

    pub fn topic_config(mut self, key: &'static str, value: &'static str) -> Destination {
        self.topic_config.push((key, value));
        self
    }

    pub fn partitions(mut self, partitions: i32) -> Destination {
        self.partitions = partitions;
        self
    }

    pub fn integration_names(mut self, names: &[&str]) -> Destination {
        self.integration_names = Some(names.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    pub fn match_any(mut self) -> Destination {
        self.match_mode = "any";
        self
    }
}

/// The topics and config of one test: every name is unique to it.
pub struct Scenario {
    pub group: String,
    pub input: String,
    pub consent: String,
    pub dead_letter: String,
    pub destinations: Vec<Destination>,
    pub input_partitions: i32,
    pub dir: PathBuf,
    /// Extra TOML appended to the generated config (whole tables).
    pub extra: String,
    /// Extra keys for the `[consent]` table.
    pub consent_extra: String,
    /// Extra keys for the `[input]` table.
    pub input_extra: String,
    /// Extra entries for `[kafka.properties]`.
    pub kafka_properties: String,
    /// Extra keys for the `[delivery]` table; `{instance}` becomes the instance's name.
    pub delivery_extra: String,
    /// Lines added to `[dead_letter]`.
    pub dead_letter_extra: String,
}

impl Scenario {
    pub fn new(name: &str, destinations: Vec<Destination>) -> Scenario {
        Scenario::with_partitions(name, destinations, 1)
    }

    pub fn with_partitions(
        name: &str,
        destinations: Vec<Destination>,
        input_partitions: i32,
    ) -> Scenario {
        Scenario::with_topics(name, destinations, input_partitions, 1)
    }

    /// Input and consent topics with the given partition counts.
    pub fn with_topics(
        name: &str,
        destinations: Vec<Destination>,
        input_partitions: i32,
        consent_partitions: i32,
    ) -> Scenario {
        let scenario = Scenario::named(name, destinations, input_partitions);
        create_topic(&scenario.input, input_partitions, false);
        create_topic(&scenario.consent, consent_partitions, true);
        create_topic(&scenario.dead_letter, 1, false);
        for dest in &scenario.destinations {
            create_topic_with(&dest.topic, dest.partitions, &dest.topic_config);
        }
        scenario
    }

    /// Like `with_topics`, but every topic (and `extra_topics`, unconfigured) is created in one
    /// request, without waiting for the broker's metadata to show them: as a deploy script that
    /// starts the enforcer right after creating its topics would.
    pub fn just_created(
        name: &str,
        destinations: Vec<Destination>,
        input_partitions: i32,
        consent_partitions: i32,
        extra_topics: &[(&str, i32)],
    ) -> Scenario {
        let scenario = Scenario::named(name, destinations, input_partitions);
        let mut topics = vec![
            NewTopic::new(
                &scenario.input,
                input_partitions,
                TopicReplication::Fixed(1),
            ),
            NewTopic::new(
                &scenario.consent,
                consent_partitions,
                TopicReplication::Fixed(1),
            )
            .set("cleanup.policy", "compact"),
            NewTopic::new(&scenario.dead_letter, 1, TopicReplication::Fixed(1)),
        ];
        for dest in &scenario.destinations {
            let mut topic = NewTopic::new(&dest.topic, dest.partitions, TopicReplication::Fixed(1));
            for (key, value) in &dest.topic_config {
                topic = topic.set(key, value);
            }
            topics.push(topic);
        }
        for (topic, partitions) in extra_topics {
            topics.push(NewTopic::new(
                topic,
                *partitions,
                TopicReplication::Fixed(1),
            ));
        }
        let results = runtime()
            .block_on(admin().create_topics(&topics, &AdminOptions::new()))
            .expect("create topics");
        for result in results {
            result.expect("topic created");
        }
        scenario
    }

    /// The names and config of a scenario; its topics are not created.
    fn named(name: &str, destinations: Vec<Destination>, input_partitions: i32) -> Scenario {
        let id = unique(name);
        let destinations: Vec<Destination> = destinations
            .into_iter()
            .map(|mut d| {
                d.topic = format!("{id}.dest.{}", d.name);
                d
            })
            .collect();
        let scenario = Scenario {
            group: format!("{id}.group"),
            input: format!("{id}.events"),
            consent: format!("{id}.consent"),
            dead_letter: format!("{id}.dead-letter"),
            destinations,
            input_partitions,
            dir: std::env::temp_dir().join(&id),
            extra: String::new(),
            consent_extra: String::new(),
            input_extra: String::new(),
            kafka_properties: String::new(),
            delivery_extra: String::new(),
            dead_letter_extra: String::new(),
        };
        std::fs::create_dir_all(&scenario.dir).unwrap();
        scenario
    }

    pub fn topic(&self, destination: &str) -> &str {
        &self
            .destinations
            .iter()
            .find(|d| d.name == destination)
            .expect("destination in scenario")
            .topic
    }

    pub fn config(&self, metrics_port: u16) -> String {
        let mut toml = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"{}\"\n\
             [kafka.consumer_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [kafka.properties]\n{}\n\
             [input]\ntopics = [\"{}\"]\n{}\n\
             [consent]\ntopic = \"{}\"\n{}\n\
             [dead_letter]\ntopic = \"{}\"\n{}\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [delivery]\ncommit_interval_ms = 200\ndrain_timeout_secs = 20\n{}\n",
            bootstrap(),
            self.group,
            self.kafka_properties,
            self.input,
            self.input_extra,
            self.consent,
            self.consent_extra,
            self.dead_letter,
            self.dead_letter_extra,
            self.delivery_extra,
        );
        for dest in &self.destinations {
            let categories: Vec<String> =
                dest.categories.iter().map(|c| format!("{c:?}")).collect();
            toml.push_str(&format!(
                "\n[[destination]]\nname = {:?}\ntopic = {:?}\ncategories = [{}]\nmatch = {:?}\n",
                dest.name,
                dest.topic,
                categories.join(", "),
                dest.match_mode
            ));
            if let Some(names) = &dest.integration_names {
                let names: Vec<String> = names.iter().map(|c| format!("{c:?}")).collect();
                toml.push_str(&format!("integration_names = [{}]\n", names.join(", ")));
            }
        }
        toml.push('\n');
        toml.push_str(&self.extra);
        toml
    }

    /// Writes the config and starts an enforcer on it.
    pub fn start(&self) -> Enforcer {
        self.start_instance("a")
    }

    /// Starts an enforcer named `instance` (its `{instance}` in `delivery_extra`).
    pub fn start_instance(&self, instance: &str) -> Enforcer {
        let port = free_port();
        let path = self.dir.join(format!("enforcer-{instance}-{port}.toml"));
        std::fs::write(&path, self.config(port).replace("{instance}", instance)).unwrap();
        Enforcer::start(&path, port)
    }

    /// Starts an enforcer that reaches the cluster at `servers` (its `KAFKA_BOOTSTRAP_SERVERS`),
    /// e.g. through another listener than the one the test helpers use.
    pub fn start_through(&self, servers: &str) -> Enforcer {
        let port = free_port();
        let path = self.dir.join(format!("enforcer-{port}.toml"));
        std::fs::write(&path, self.config(port).replace("{instance}", "a")).unwrap();
        Enforcer::start_with_bootstrap(&path, port, servers)
    }

    /// Starts an enforcer and waits until it judges events.
    pub fn start_ready(&self) -> Enforcer {
        let enforcer = self.start();
        enforcer.wait_ready();
        enforcer
    }

    pub fn send_events(&self, events: &[(&str, &str)]) {
        let records: Vec<Record> = events.iter().map(|(k, v)| Record::new(k, v)).collect();
        produce(&self.input, &records);
    }

    pub fn send_consent(&self, user: &str, value: &str) {
        produce_one(&self.consent, user, value);
    }

    /// Waits until every event written so far is judged, written and committed.
    pub fn wait_processed(&self) {
        wait_committed(&self.group, &self.input);
    }

    /// `wait_processed`, with `enforcer`'s log in the failure message.
    pub fn wait_processed_by(&self, enforcer: &Enforcer) {
        if let Err(seen) = committed_by(&self.group, &self.input, Instant::now() + WAIT) {
            panic!(
                "group {} did not commit {}: {seen}; log:\n{}",
                self.group,
                self.input,
                enforcer.logs()
            );
        }
    }

    pub fn delivered(&self, destination: &str) -> Vec<Record> {
        read_all(self.topic(destination))
    }

    pub fn dead_letters(&self) -> Vec<Record> {
        read_all(&self.dead_letter)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The enforcer binary, as a child process.
pub struct Enforcer {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_consent-enforcer")
}

impl Enforcer {
    pub fn start(config: &Path, metrics_port: u16) -> Enforcer {
        Enforcer::start_with_bootstrap(config, metrics_port, bootstrap())
    }

    /// Starts with `KAFKA_BOOTSTRAP_SERVERS` set to `servers`.
    pub fn start_with_bootstrap(config: &Path, metrics_port: u16, servers: &str) -> Enforcer {
        let log = config.with_extension("log");
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .env("KAFKA_BOOTSTRAP_SERVERS", servers)
            .env(
                "RUST_LOG",
                std::env::var("ENFORCER_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the enforcer");
        Enforcer {
            child,
            metrics_port,
            log,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path of the HTTP endpoint: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.metrics_port, path)
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((200, _)) = self.get("/readyz") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "enforcer never became ready; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one series, e.g. `consent_enforcer_events_dropped_total{destination="a",reason="denied"}`;
    /// labels may be given in any order.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    /// Waits until a series reaches at least `value`.
    pub fn wait_metric(&self, series: &str, value: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let current = self.metric(series);
            if current >= value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {current}, expected {value}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "enforcer did not exit within {timeout:?}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    pub fn kill9(&mut self) {
        self.signal("KILL");
        self.wait_exit(WAIT);
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Finds a series in Prometheus text; 0 if absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    let mut wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    wanted.sort_unstable();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (line_name, line_labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        if line_name != name {
            continue;
        }
        let mut have: Vec<&str> = line_labels.split(',').filter(|l| !l.is_empty()).collect();
        have.sort_unstable();
        if have == wanted {
            return value.parse().unwrap_or(f64::NAN);
        }
    }
    0.0
}

/// A Segment-style track event for a user, without a `timestamp` (so its time is the
/// record's Kafka timestamp: when it was written).
pub fn track(user_id: &str, message_id: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Clicked","userId":"{user_id}","messageId":"{message_id}","properties":{{"n":1}}}}"#
    )
}

/// A track event that happened at `timestamp` (RFC 3339).
pub fn track_at(user_id: &str, message_id: &str, timestamp: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Clicked","userId":"{user_id}","messageId":"{message_id}","timestamp":"{timestamp}","properties":{{"n":1}}}}"#
    )
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Waits for the wall clock's next millisecond, so the next write's timestamps are later than
/// every timestamp of the writes before.
pub fn next_millisecond() {
    let start = now_ms();
    while now_ms() <= start {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A consent record for each of `user-0` .. `user-{users - 1}`, set a minute ago: analytics
/// granted where `granted(user)`, denied otherwise.
pub fn analytics_consents(users: usize, granted: impl Fn(usize) -> bool) -> Vec<Record> {
    (0..users)
        .map(|u| {
            let (given, denied): (&[&str], &[&str]) = if granted(u) {
                (&["analytics"], &[])
            } else {
                (&[], &["analytics"])
            };
            Record::new(
                &format!("user-{u}"),
                &consent(given, denied, &rfc3339_from_now(-60_000)),
            )
        })
        .collect()
}

/// Track events `e{i}` for each `i` in `range`, of user `user-{i % users}`, keyed by user.
pub fn track_events(range: std::ops::Range<usize>, users: usize) -> Vec<Record> {
    range
        .map(|i| {
            let user = format!("user-{}", i % users);
            Record::new(&user, &track(&user, &format!("e{i}")))
        })
        .collect()
}

/// RFC 3339 for now plus `offset_ms` (negative: in the past).
pub fn rfc3339_from_now(offset_ms: i64) -> String {
    rfc3339_at(now_ms() + offset_ms)
}

/// Unix milliseconds as RFC 3339, for times that must be exactly equal.
pub fn rfc3339_at(ms: i64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A consent value granting exactly the given categories (others listed as false).
pub fn consent(granted: &[&str], denied: &[&str], updated_at: &str) -> String {
    let mut preferences: Vec<String> = granted.iter().map(|c| format!("\"{c}\":true")).collect();
    preferences.extend(denied.iter().map(|c| format!("\"{c}\":false")));
    format!(
        r#"{{"categoryPreferences":{{{}}},"updatedAt":"{updated_at}"}}"#,
        preferences.join(",")
    )
}

/// The `messageId`s of records, in order.
pub fn message_ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(r.value.as_deref().unwrap_or_default())
                .ok()
                .and_then(|v| {
                    v.get("messageId")
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_default()
        })
        .collect()
}
