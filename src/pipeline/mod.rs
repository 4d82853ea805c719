//! The loop that ties the data path together, on one dedicated thread:
//! load the consent table -> join the group -> for each event: parse, decide per destination,
//! write -> settle acknowledgements -> commit what is complete.
//!
//! One thread owns the consent table and judges every event, so the table needs no lock and an
//! event is always judged with every consent record applied so far. librdkafka's own threads do
//! the network I/O and compression.

mod batch;
mod freshness;
mod hold;
mod judge;
mod rebalance;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;

use crate::config::{Config, ConsentMode, Guarantee};
use crate::consent::follower::ConsentEffects;
use crate::consent::record::encode_value;
use crate::consent::{ConsentFollower, ConsentState};
use crate::decision::Rule;
use crate::delivery::tag::{InputPartition, Tag, Target};
use crate::delivery::transaction::Outcome;
use crate::delivery::{Delivery, Settings, Topics, WriteFailed};
use crate::kafka::{self, StartupError};
use crate::telemetry::{self, ConsentMetrics, EventMetrics};
use crate::vocabulary::Vocabulary;
use batch::Batch;
use freshness::{CatchUp, Freshness};
use hold::Hold;
use judge::Judge;
use rebalance::EventConsumerContext;

/// Header on a consent record the enforcer re-published after a stale one.
pub const REPUBLISHED_HEADER: &str = "consent-enforcer-republished";

/// Consent records applied per turn once running.
const CONSENT_RECORDS_PER_TURN: usize = 10_000;
/// How long an idle loop waits for an event.
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// How often held events are checked for expiry and the hold topic for memory.
const HOLD_SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Events read and waiting for their batch's sample at most; past it the loop stops reading
/// (the events wait in librdkafka's queue, bounded by `queued.max.messages.kbytes`).
const MAX_WAITING_EVENTS: usize = 8 * batch::EVENTS_PER_TURN;
/// While the front batch's sample is out, how long a read waits for events before the loop
/// looks for the answer again: what arrives meanwhile is read, and asks for its sample, before
/// the answer comes back, so that it rides the very next request.
const READ_SLICE: Duration = Duration::from_millis(1);

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
    if config.consent.mode == ConsentMode::Copartitioned {
        kafka::check_copartitioned(config, &partitions)?;
    }
    let mut vocabulary = Vocabulary::from_config(config);
    let rules = Rule::from_config(config, &mut vocabulary);
    let vocabulary = Arc::new(vocabulary);
    telemetry::describe();
    metrics::gauge!(telemetry::READY).set(0.0);

    let hold_topic = config
        .hold
        .enabled
        .then(|| config.hold.topic.clone())
        .flatten();
    // The hold topic is read like an input topic, by the same group.
    let mut input_topics = config.input.topics.clone();
    input_topics.extend(hold_topic.clone());
    let destinations = config.destinations.iter().map(|d| d.name.as_str());
    let delivery = Arc::new(Delivery::new(
        &kafka::producer_config(config),
        Topics {
            input: input_topics.clone(),
            destinations: config
                .destinations
                .iter()
                .map(|d| d.topic.clone())
                .collect(),
            dead_letter: config.dead_letter.topic.clone(),
            consent: config.consent.topic.clone(),
            hold: hold_topic.clone(),
        },
        Settings {
            guarantee: config.delivery.guarantee,
            transaction_interval: Duration::from_millis(config.delivery.transaction_interval_ms),
            transaction_max_events: config.delivery.transaction_max_events,
            startup_timeout: Duration::from_secs(config.kafka.startup_timeout_secs),
        },
        EventMetrics::register(destinations),
        metrics::counter!(telemetry::CONSENT_RECORDS_REPUBLISHED),
        signals.stopping.clone(),
    )?);

    let consent_partitions = partitions.get(&config.consent.topic).copied().unwrap_or(1);
    let mut follower = ConsentFollower::start(
        config,
        consent_partitions,
        vocabulary.clone(),
        ConsentMetrics::register(),
    )?;
    let drain_timeout = Duration::from_secs(config.delivery.drain_timeout_secs);
    let hold = hold_topic.as_ref().map(|topic| {
        RefCell::new(Hold::new(
            topic.clone(),
            config.hold.max_age.as_millis(),
            config.hold.max_bytes,
        ))
    });
    let mut loading = Effects {
        delivery: &delivery,
        vocabulary: &vocabulary,
        consent_topic: &config.consent.topic,
        drain_timeout,
        consumer: None,
        hold: hold.as_ref(),
    };

    if !load_table(&mut follower, &mut loading, signals) {
        return shut_down_before_start(&delivery, drain_timeout);
    }

    let consumer: BaseConsumer<EventConsumerContext> = kafka::event_consumer_config(config)
        .create_with_context(EventConsumerContext::new(delivery.clone(), drain_timeout))?;
    let mut effects = Effects {
        consumer: Some(&consumer),
        ..loading
    };
    let topics: Vec<&str> = input_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    set_ready(signals, true);
    tracing::info!("ready: judging events");

    let judge = Judge {
        delivery: &delivery,
        vocabulary: &vocabulary,
        rules: &rules,
        destination_names: config
            .destinations
            .iter()
            .map(|d| d.name.as_str())
            .collect(),
        destination_topics: config
            .destinations
            .iter()
            .map(|d| d.topic.as_str())
            .collect(),
        dead_letter_topic: &config.dead_letter.topic,
        when_missing: config.consent.when_missing,
        max_event_bytes: config.input.max_event_bytes,
        timestamp_tolerance_ms: config.consent.history_window.as_millis(),
        hold_topic: hold_topic.as_deref(),
    };
    let mut last_expiry_scan = Instant::now();
    let copartitioned = config.consent.mode == ConsentMode::Copartitioned;
    let mut followed_version = u64::MAX;
    let mut follow_error = None;
    let mut freshness = Freshness::new(config);
    let commit_interval = Duration::from_millis(config.delivery.commit_interval_ms);
    let mut last_commit = Instant::now();
    // Events read wait, batch by batch, until the table has caught up with the consent topic
    // as it was after they were read. Reading goes on while batches wait: each batch asks for
    // its sample as soon as it is read, so the samples' round trips overlap with each other
    // (one request answers every ask made while the one before is in flight) and with
    // judging, and an event never waits for a whole turn of the batch before it to be read.
    let mut waiting: VecDeque<Batch<'_>> = VecDeque::new();
    let mut read_wait = IDLE_WAIT;
    let read_again = |waiting: &mut VecDeque<Batch<'_>>| {
        after_rewind(&delivery, &consumer, waiting, hold.as_ref(), drain_timeout);
    };
    while !signals.stopping.load(Ordering::Relaxed) && delivery.failure().is_none() {
        let room = waiting.iter().map(|batch| batch.events.len()).sum::<usize>() < MAX_WAITING_EVENTS;
        let mut read_all = false;
        if room {
            let wait = if waiting.is_empty() {
                IDLE_WAIT
            } else {
                read_wait
            };
            let batch = Batch::read(&consumer, &delivery, wait);
            // A full batch: more may be waiting in librdkafka's queue.
            read_all = batch
                .as_ref()
                .is_none_or(|batch| batch.events.len() < batch::EVENTS_PER_TURN);
            waiting.extend(batch);
        }
        if copartitioned {
            let version = delivery.assignment_version();
            if version != followed_version {
                if let Err(error) = follower.follow(&delivery.assigned_partition_numbers()) {
                    telemetry::error("consent", "follow");
                    tracing::error!(%error, "cannot follow the consent partitions of this instance's input partitions");
                    follow_error = Some(error);
                    break;
                }
                followed_version = version;
            }
        }
        // After `follow`, so that a sample covers the consent partitions of its batch's input
        // partitions.
        for batch in &mut waiting {
            if batch.wait.is_none() {
                batch.wait = Some(freshness.ask(&follower));
            }
        }
        follower.poll(Duration::ZERO, CONSENT_RECORDS_PER_TURN, &mut effects);
        // Whether a check this turn found the table caught up (or missed).
        let mut fresh = None;
        if waiting.is_empty() && freshness.probe_due() {
            fresh = Some(freshness.probe(&mut follower, &mut effects));
        }
        // Applying consent records may have aborted a transaction (exactly-once).
        read_again(&mut waiting);
        let mut front = CatchUp::Waiting;
        while let Some(batch) = waiting.front_mut() {
            front = match &mut batch.wait {
                Some(wait) => freshness.check(wait, &mut follower),
                None => CatchUp::Waiting,
            };
            match front {
                CatchUp::Reached => fresh = Some(true),
                CatchUp::Missed => {
                    fresh = fresh.or(Some(false));
                    break;
                }
                CatchUp::Waiting => break,
            }
            if let Some(batch) = waiting.pop_front() {
                let now = now_ms();
                for (index, message) in batch.events.iter().enumerate() {
                    let mut held = hold.as_ref().map(RefCell::borrow_mut);
                    let table = follower.table_for(message.partition());
                    judge.event(
                        table,
                        message,
                        batch.assignments_before(index),
                        now,
                        held.as_deref_mut(),
                    );
                }
            }
        }
        if let Some(fresh) = fresh {
            freshness.report(fresh, signals);
        }
        if let (Some(true), Some(hold)) = (fresh, &hold) {
            let scan = last_expiry_scan.elapsed() >= HOLD_SCAN_INTERVAL;
            if scan {
                last_expiry_scan = Instant::now();
            }
            serve_hold(&judge, &follower, hold, &consumer, scan);
        }
        delivery.poll();
        match delivery.guarantee() {
            Guarantee::ExactlyOnce => {
                if delivery.transaction_due() {
                    delivery.commit_transaction(&consumer, drain_timeout);
                }
                read_again(&mut waiting);
            }
            Guarantee::AtLeastOnce => {
                if !freshness.stale && last_commit.elapsed() >= commit_interval {
                    if let Err(error) = delivery.commit(&consumer, CommitMode::Async, None) {
                        telemetry::error("commit", "async");
                        tracing::warn!(%error, "offset commit failed; retrying with the next commit");
                    }
                    last_commit = Instant::now();
                }
            }
        }
        read_wait = Duration::ZERO;
        if front == CatchUp::Waiting && read_all {
            if let Some(wait) = waiting.front_mut().and_then(|batch| batch.wait.as_mut()) {
                if room && !wait.answered() {
                    // The next read is the wait.
                    read_wait = READ_SLICE;
                } else {
                    // For the answer (no room to read) or for the records up to it.
                    freshness.wait_a_slice(wait, &mut follower, &mut effects);
                    read_again(&mut waiting);
                }
            }
        }
    }
    // Events read but not judged are not committed: they are read again after a restart.
    drop(waiting);

    set_ready(signals, false);
    tracing::info!("stopping: draining in-flight writes");
    let drained = match delivery.guarantee() {
        Guarantee::ExactlyOnce => {
            delivery.commit_transaction(&consumer, drain_timeout) != Outcome::Aborted
        }
        Guarantee::AtLeastOnce => {
            let drained = delivery.drain(None, drain_timeout);
            if let Err(error) = delivery.commit(&consumer, CommitMode::Sync, None) {
                telemetry::error("commit", "shutdown");
                tracing::warn!(%error, "final offset commit failed; uncommitted events will be redelivered");
            }
            drained
        }
    };
    // Leaving the group revokes every partition: the rebalance callback finds nothing left
    // to drain and commits nothing new.
    consumer.unsubscribe();
    drop(consumer);
    if let Some(failure) = delivery.failure() {
        return Err(failure.into());
    }
    if let Some(error) = follow_error {
        return Err(error.into());
    }
    if !drained {
        return Err(PipelineError::DrainTimeout {
            secs: config.delivery.drain_timeout_secs,
        });
    }
    tracing::info!("stopped cleanly: every acknowledged event committed");
    Ok(())
}

/// After an aborted transaction rewound the consumer, events read but not judged are dropped
/// and read again: those of rewound partitions from the rewind offsets on (held events of
/// theirs too), the others by seeking their partitions back to the first one dropped, since
/// nothing else would make the consumer read them again.
fn after_rewind(
    delivery: &Delivery,
    consumer: &BaseConsumer<EventConsumerContext>,
    waiting: &mut VecDeque<Batch<'_>>,
    hold: Option<&RefCell<Hold>>,
    timeout: Duration,
) {
    let rewound = delivery.take_rewound();
    if rewound.is_empty() {
        return;
    }
    let mut read_again: HashMap<InputPartition, (String, i64)> = HashMap::new();
    for batch in waiting.drain(..) {
        for (index, message) in batch.events.iter().enumerate() {
            let Some(input) = delivery.input_partition(message.topic(), message.partition()) else {
                continue;
            };
            // Read under an earlier assignment: the consumer reads it again from the
            // committed offset anyway, and a seek to it could skip what lies before.
            if !delivery.owned_under_assignment_before(input, batch.assignments_before(index)) {
                continue;
            }
            let entry = read_again
                .entry(input)
                .or_insert_with(|| (message.topic().to_owned(), message.offset()));
            entry.1 = entry.1.min(message.offset());
        }
    }
    for (input, (topic, offset)) in read_again {
        let sought = rewound
            .iter()
            .any(|(r, rewind_offset)| *r == input && *rewind_offset <= offset);
        if sought {
            continue;
        }
        let partition = i32::from(input.partition);
        if let Err(error) = consumer.seek(&topic, partition, Offset::Offset(offset), timeout) {
            telemetry::error("consume", "seek");
            delivery.fail_to_read_again(&topic, error);
        }
    }
    if let Some(hold) = hold {
        let mut hold = hold.borrow_mut();
        for (input, offset) in rewound {
            hold.forget(input, offset);
        }
    }
}

/// Releases held events whose user has chosen; on `scan`, also drops expired ones, forgets
/// those of partitions no longer owned, and pauses or resumes the hold topic for memory.
fn serve_hold(
    judge: &Judge<'_>,
    follower: &ConsentFollower,
    hold: &RefCell<Hold>,
    consumer: &BaseConsumer<EventConsumerContext>,
    scan: bool,
) {
    let chosen = hold.borrow_mut().take_chosen();
    for event in chosen {
        let table = follower.table_for(i32::from(event.input.partition));
        judge.resolve(table, event, false);
    }
    if !scan {
        return;
    }
    let expired = hold.borrow_mut().take_expired(now_ms());
    for event in expired {
        let table = follower.table_for(i32::from(event.input.partition));
        judge.resolve(table, event, true);
    }
    let mut hold = hold.borrow_mut();
    hold.retain_assigned(|input| judge.delivery.assignment(input));
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let mut held_partitions = rdkafka::TopicPartitionList::new();
    for element in assignment.elements_for_topic(&hold.topic) {
        held_partitions.add_partition(&hold.topic, element.partition());
    }
    if held_partitions.count() == 0 {
        return;
    }
    let result = if hold.full() {
        consumer.pause(&held_partitions)
    } else if hold.has_room() {
        consumer.resume(&held_partitions)
    } else {
        Ok(())
    };
    if let Err(error) = result {
        telemetry::error("hold", "pause");
        tracing::warn!(%error, "cannot pause or resume the hold topic");
    }
}

fn set_ready(signals: &Signals, ready: bool) {
    signals.ready.store(ready, Ordering::SeqCst);
    metrics::gauge!(telemetry::READY).set(if ready { 1.0 } else { 0.0 });
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Reads the consent topic to its end. False if asked to stop first.
fn load_table(
    follower: &mut ConsentFollower,
    effects: &mut Effects<'_>,
    signals: &Signals,
) -> bool {
    let started = Instant::now();
    let mut last_report = Instant::now();
    tracing::info!("loading the consent table");
    while !follower.loaded() {
        if signals.stopping.load(Ordering::Relaxed) {
            return false;
        }
        follower.poll(
            Duration::from_millis(100),
            CONSENT_RECORDS_PER_TURN,
            effects,
        );
        effects.delivery.poll();
        if last_report.elapsed() >= Duration::from_secs(5) {
            tracing::info!(
                states = follower.states(),
                "still loading the consent table"
            );
            last_report = Instant::now();
        }
    }
    // Stale records found while loading were re-published by the last poll once loaded.
    let seconds = started.elapsed().as_secs_f64();
    metrics::gauge!(telemetry::CONSENT_BOOTSTRAP_SECONDS).set(seconds);
    tracing::info!(states = follower.states(), seconds, "consent table loaded");
    true
}

fn shut_down_before_start(
    delivery: &Delivery,
    drain_timeout: Duration,
) -> Result<(), PipelineError> {
    delivery.drain(None, drain_timeout);
    match delivery.failure() {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}

/// What consent records ask of delivery: finish earlier writes before a revocation, and
/// write newer states back after a stale record.
struct Effects<'a> {
    delivery: &'a Delivery,
    vocabulary: &'a Vocabulary,
    consent_topic: &'a str,
    drain_timeout: Duration,
    /// The event consumer, once events are judged (exactly-once commits need its group).
    consumer: Option<&'a BaseConsumer<EventConsumerContext>>,
    hold: Option<&'a RefCell<Hold>>,
}

impl ConsentEffects for Effects<'_> {
    fn before_revocation(&mut self) {
        match (self.delivery.guarantee(), self.consumer) {
            (Guarantee::ExactlyOnce, Some(consumer)) => {
                // Writes become visible on commit: commit them before the revocation applies.
                self.delivery
                    .commit_transaction(consumer, self.drain_timeout);
            }
            _ => {
                if !self.delivery.drain(None, self.drain_timeout) {
                    tracing::warn!("writes judged before a revocation are still unacknowledged");
                }
            }
        }
    }

    fn applied(&mut self, user: &str) {
        if let Some(hold) = self.hold {
            hold.borrow_mut().consent_applied(user);
        }
    }

    fn republish(&mut self, user: &str, state: ConsentState) {
        let value = encode_value(&state, self.vocabulary);
        let tag = Tag {
            target: Target::Republish,
            input: InputPartition {
                topic: 0,
                partition: 0,
            },
            seq: 0,
        };
        let record = BaseRecord::with_opaque_to(self.consent_topic, tag.encode())
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
