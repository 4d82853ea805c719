//! The baseline: a plain consume-and-copy with the enforcer's fan-out and delivery guarantee
//! and no consent logic. It uses the enforcer's own delivery layer (the same producer
//! settings, acknowledgement tracking and offset commits), so the difference between the two
//! is the consent work: parsing, the table, the decision and freshness.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consent_enforcer::config::Guarantee;
use consent_enforcer::delivery::tag::{Tag, Target};
use consent_enforcer::delivery::{Delivery, Settings, Topics};
use consent_enforcer::event::Malformed;
use consent_enforcer::input::Assignments;
use consent_enforcer::telemetry::EventMetrics;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;

pub struct CopyArgs {
    pub bootstrap: String,
    pub group: String,
    pub input: String,
    pub destinations: Vec<String>,
    /// Copies per event on average, spread evenly.
    pub fanout: f64,
    /// The enforcer's dead-letter topic, and the share of events it wrote there: librdkafka
    /// sends one partition per produce request, so every partition written to lengthens the
    /// producer's round of requests, and the copy writes to the same ones.
    pub dead_letter: String,
    pub dead_letter_share: f64,
}

/// Runs until killed.
pub fn run(args: CopyArgs) -> anyhow::Result<()> {
    let mut producer = ClientConfig::new();
    producer
        .set("bootstrap.servers", &args.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set(
            "queue.buffering.max.messages",
            consent_enforcer::kafka::PRODUCER_QUEUE_MESSAGES,
        )
        .set(
            "statistics.interval.ms",
            consent_enforcer::kafka::STATISTICS_INTERVAL_MS,
        )
        .set("compression.type", "lz4");
    let delivery = Delivery::new(
        &producer,
        Topics {
            inputs: Arc::new(Assignments::new(vec![args.input.clone()])),
            destinations: args.destinations.clone(),
            dead_letter: args.dead_letter.clone(),
            consent: String::new(),
            hold: None,
        },
        Settings {
            guarantee: Guarantee::AtLeastOnce,
            transaction_interval: Duration::from_millis(100),
            transaction_max_events: 10_000,
            startup_timeout: Duration::from_secs(30),
            transaction_timeout: consent_enforcer::delivery::DEFAULT_TRANSACTION_TIMEOUT,
            init_deadline: Instant::now() + Duration::from_secs(30),
        },
        EventMetrics::register(args.destinations.iter().map(String::as_str)),
        metrics::counter!("unused"),
        Arc::new(AtomicBool::new(false)),
        Arc::default(),
    )?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", "read_committed")
        .create()?;
    consumer.subscribe(&[&args.input])?;
    let mut copied: u64 = 0;
    let mut dead_lettered: u64 = 0;
    let mut read: u64 = 0;
    let mut last_commit = Instant::now();
    loop {
        let mut wait = Duration::from_millis(20);
        for _ in 0..1_000 {
            let Some(message) = consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            let message = message?;
            let Some(input) = delivery
                .inputs()
                .input_partition(message.topic(), message.partition())
            else {
                continue;
            };
            let seq = delivery.begin(input, message.offset());
            read += 1;
            let copy = |topic: &str, target: Target| {
                delivery.send(BaseRecord::<[u8], [u8], usize> {
                    topic,
                    partition: None,
                    payload: message.payload(),
                    key: message.key(),
                    timestamp: message.timestamp().to_millis(),
                    headers: message.headers().map(|h| h.detach()),
                    delivery_opaque: Tag { target, input, seq }.encode(),
                })
            };
            let target = (args.fanout * read as f64).floor() as u64;
            while copied < target {
                let i = (copied % args.destinations.len() as u64) as usize;
                copied += 1;
                copy(&args.destinations[i], Target::Destination(i as u8))?;
            }
            if (args.dead_letter_share * read as f64).floor() as u64 > dead_lettered {
                dead_lettered += 1;
                copy(&args.dead_letter, Target::DeadLetter(Malformed::NotJson))?;
            }
            delivery.end(input, seq);
        }
        delivery.poll();
        if last_commit.elapsed() >= Duration::from_secs(1) {
            let _ = delivery.commit_within(&consumer, None, Duration::from_secs(10));
            last_commit = Instant::now();
        }
        if let Some(failure) = delivery.failure() {
            return Err(failure.into());
        }
    }
}
