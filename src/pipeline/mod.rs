//! The loop that ties the data path together, on one dedicated thread:
//! load the consent table -> join the group -> for each event: parse, decide per destination,
//! write -> settle acknowledgements -> commit what is complete.
//!
//! One thread owns the consent table and judges every event, so the table needs no lock and an
//! event is always judged with every consent record applied so far. librdkafka's own threads do
//! the network I/O and compression.

mod rebalance;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use crate::config::{Config, WhenMissing};
use crate::consent::record::encode_value;
use crate::consent::{ConsentFollower, ConsentState, ConsentTable};
use crate::decision::{decide, person_state, Grants, Rule};
use crate::delivery::tag::{InputPartition, Tag, Target};
use crate::delivery::{self, dead_letter, Delivery, Topics, WriteFailed};
use crate::event;
use crate::kafka::{self, StartupError};
use crate::telemetry::{self, ConsentMetrics, EventMetrics};
use crate::vocabulary::Vocabulary;
use rebalance::EventConsumerContext;

/// Header on a consent record the enforcer re-published after a stale one.
pub const REPUBLISHED_HEADER: &str = "consent-enforcer-republished";

/// Events read per turn of the loop before consent records, acknowledgements and commits
/// are served again.
const EVENTS_PER_TURN: usize = 1_000;
/// Consent records applied per turn once running.
const CONSENT_RECORDS_PER_TURN: usize = 10_000;
/// How long an idle loop waits for an event.
const IDLE_WAIT: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("Kafka client error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    WriteFailed(#[from] WriteFailed),
    #[error("writes were still unacknowledged after delivery.drain_timeout_secs = {secs}; their events were not committed and will be redelivered")]
    DrainTimeout { secs: u64 },
}

/// Flags shared with the async side: `stopping` is set on SIGTERM/SIGINT, `ready` is what
/// /readyz reports.
#[derive(Clone, Default)]
pub struct Signals {
    pub stopping: Arc<AtomicBool>,
    pub ready: Arc<AtomicBool>,
}

/// Runs the enforcer until `signals.stopping` is set or a write fails for good.
pub fn run(config: &Config, signals: &Signals) -> Result<(), PipelineError> {
    let partitions = kafka::check_topics(config)?;
    let mut vocabulary = Vocabulary::from_config(config);
    let rules = Rule::from_config(config, &mut vocabulary);
    telemetry::describe();
    metrics::gauge!(telemetry::READY).set(0.0);

    let destinations = config.destinations.iter().map(|d| d.name.as_str());
    let delivery = Arc::new(Delivery::new(
        &kafka::producer_config(config),
        Topics {
            input: config.input.topics.clone(),
            destinations: config
                .destinations
                .iter()
                .map(|d| d.topic.clone())
                .collect(),
            dead_letter: config.dead_letter.topic.clone(),
            consent: config.consent.topic.clone(),
        },
        EventMetrics::register(destinations),
        metrics::counter!(telemetry::CONSENT_RECORDS_REPUBLISHED),
        signals.stopping.clone(),
    )?);

    let consent_partitions = partitions.get(&config.consent.topic).copied().unwrap_or(1);
    let mut follower =
        ConsentFollower::start(config, consent_partitions, ConsentMetrics::register())?;
    let mut table = ConsentTable::default();
    let republisher = Republisher {
        delivery: &delivery,
        vocabulary: &vocabulary,
        topic: &config.consent.topic,
    };

    if !load_table(
        &mut follower,
        &mut table,
        &vocabulary,
        &republisher,
        signals,
    ) {
        return shut_down_before_start(&delivery, config);
    }

    let drain_timeout = Duration::from_secs(config.delivery.drain_timeout_secs);
    let consumer: BaseConsumer<EventConsumerContext> = kafka::event_consumer_config(config)
        .create_with_context(EventConsumerContext::new(delivery.clone(), drain_timeout))?;
    let topics: Vec<&str> = config.input.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    signals.ready.store(true, Ordering::SeqCst);
    metrics::gauge!(telemetry::READY).set(1.0);
    tracing::info!("ready: judging events");

    let judge = Judge {
        delivery: &delivery,
        vocabulary: &vocabulary,
        rules: &rules,
        destination_topics: config
            .destinations
            .iter()
            .map(|d| d.topic.as_str())
            .collect(),
        dead_letter_topic: &config.dead_letter.topic,
        when_missing: config.consent.when_missing,
        max_event_bytes: config.input.max_event_bytes,
    };
    let commit_interval = Duration::from_millis(config.delivery.commit_interval_ms);
    let mut last_commit = Instant::now();
    while !signals.stopping.load(Ordering::Relaxed) && delivery.failure().is_none() {
        follower.poll(
            &mut table,
            &vocabulary,
            Duration::ZERO,
            CONSENT_RECORDS_PER_TURN,
            &mut |user, state| republisher.send(user, state),
        );
        let mut wait = IDLE_WAIT;
        for _ in 0..EVENTS_PER_TURN {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => judge.event(&table, &message),
                Some(Err(error)) => {
                    telemetry::error("consume", "poll");
                    tracing::warn!(%error, "reading the input topics failed; retrying");
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        delivery.poll();
        if last_commit.elapsed() >= commit_interval {
            if let Err(error) = delivery.commit(&consumer, CommitMode::Async, None) {
                telemetry::error("commit", "async");
                tracing::warn!(%error, "offset commit failed; retrying with the next commit");
            }
            last_commit = Instant::now();
        }
    }

    signals.ready.store(false, Ordering::SeqCst);
    metrics::gauge!(telemetry::READY).set(0.0);
    tracing::info!("stopping: draining in-flight writes");
    let drained = delivery.drain(None, drain_timeout);
    if let Err(error) = delivery.commit(&consumer, CommitMode::Sync, None) {
        telemetry::error("commit", "shutdown");
        tracing::warn!(%error, "final offset commit failed; uncommitted events will be redelivered");
    }
    // Leaving the group revokes every partition: the rebalance callback finds nothing left
    // to drain and commits nothing new.
    consumer.unsubscribe();
    drop(consumer);
    if let Some(failure) = delivery.failure() {
        return Err(failure.into());
    }
    if !drained {
        return Err(PipelineError::DrainTimeout {
            secs: config.delivery.drain_timeout_secs,
        });
    }
    tracing::info!("stopped cleanly: every acknowledged event committed");
    Ok(())
}

/// Reads the consent topic to its end. False if asked to stop first.
fn load_table(
    follower: &mut ConsentFollower,
    table: &mut ConsentTable,
    vocabulary: &Vocabulary,
    republisher: &Republisher<'_>,
    signals: &Signals,
) -> bool {
    let started = Instant::now();
    let mut last_report = Instant::now();
    tracing::info!("loading the consent table");
    while !follower.caught_up() {
        if signals.stopping.load(Ordering::Relaxed) {
            return false;
        }
        follower.poll(
            table,
            vocabulary,
            Duration::from_millis(100),
            CONSENT_RECORDS_PER_TURN,
            &mut |user, state| republisher.send(user, state),
        );
        republisher.delivery.poll();
        if last_report.elapsed() >= Duration::from_secs(5) {
            tracing::info!(states = table.len(), "still loading the consent table");
            last_report = Instant::now();
        }
    }
    // Stale records found while loading are re-published by the last poll once caught up.
    let seconds = started.elapsed().as_secs_f64();
    metrics::gauge!(telemetry::CONSENT_BOOTSTRAP_SECONDS).set(seconds);
    tracing::info!(states = table.len(), seconds, "consent table loaded");
    true
}

fn shut_down_before_start(delivery: &Delivery, config: &Config) -> Result<(), PipelineError> {
    let timeout = Duration::from_secs(config.delivery.drain_timeout_secs);
    delivery.drain(None, timeout);
    match delivery.failure() {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}

/// Writes a newer consent state back to the consent topic.
struct Republisher<'a> {
    delivery: &'a Delivery,
    vocabulary: &'a Vocabulary,
    topic: &'a str,
}

impl Republisher<'_> {
    fn send(&self, user: &str, state: ConsentState) {
        let value = encode_value(&state, self.vocabulary);
        let tag = Tag {
            target: Target::Republish,
            input: InputPartition {
                topic: 0,
                partition: 0,
            },
            seq: 0,
        };
        let record = BaseRecord::with_opaque_to(self.topic, tag.encode())
            .key(user.as_bytes())
            .payload(value.as_slice())
            .headers(OwnedHeaders::new().insert(Header {
                key: REPUBLISHED_HEADER,
                value: Some("stale-record-superseded"),
            }));
        // A failure is recorded by `send` and stops the service.
        let _ = self.delivery.send(record);
    }
}

/// Judges events and sends them where they may go.
struct Judge<'a> {
    delivery: &'a Delivery,
    vocabulary: &'a Vocabulary,
    rules: &'a [Rule],
    destination_topics: Vec<&'a str>,
    dead_letter_topic: &'a str,
    when_missing: WhenMissing,
    max_event_bytes: usize,
}

impl Judge<'_> {
    fn event(&self, table: &ConsentTable, message: &BorrowedMessage<'_>) {
        let metrics = self.delivery.metrics();
        metrics.received.increment(1);
        let Some(input) = self
            .delivery
            .input_partition(message.topic(), message.partition())
        else {
            // Not trackable (a partition number past 65535): never commit past it.
            telemetry::error("consume", "untrackable_partition");
            tracing::error!(
                topic = message.topic(),
                partition = message.partition(),
                "cannot track this partition"
            );
            return;
        };
        let seq = self.delivery.begin(input, message.offset());
        let tag = |target| Tag { target, input, seq }.encode();
        let record = |topic, tag| BaseRecord::<[u8], [u8], usize> {
            topic,
            partition: None,
            payload: message.payload(),
            key: message.key(),
            timestamp: message.timestamp().to_millis(),
            headers: None,
            delivery_opaque: tag,
        };
        match event::parse(message.payload(), self.max_event_bytes, self.vocabulary) {
            Err(reason) => {
                let headers = dead_letter::headers(
                    message.headers(),
                    reason,
                    message.topic(),
                    message.partition(),
                    message.offset(),
                );
                let mut dead_letter =
                    record(self.dead_letter_topic, tag(Target::DeadLetter(reason)));
                dead_letter.headers = Some(headers);
                let _ = self.delivery.send(dead_letter);
            }
            Ok(view) => {
                let stored = person_state(
                    view.user_id.as_deref().and_then(|id| table.get(id)),
                    view.anonymous_id.as_deref().and_then(|id| table.get(id)),
                );
                let grants = Grants::combine(stored, view.stamp);
                for (i, rule) in self.rules.iter().enumerate() {
                    match decide(&view, grants, rule, self.when_missing) {
                        Ok(()) => {
                            let mut write = record(
                                self.destination_topics[i],
                                tag(Target::Destination(i as u8)),
                            );
                            write.headers = delivery::copy_headers(message.headers());
                            if self.delivery.send(write).is_err() {
                                break;
                            }
                        }
                        Err(reason) => metrics.dropped(i, reason),
                    }
                }
            }
        }
        self.delivery.end(input);
    }
}
