//! The loop that ties the data path together, on one dedicated thread:
//! load the consent table -> join the group -> for each event: parse, decide per destination,
//! write -> settle acknowledgements -> commit what is complete.
//!
//! One thread owns the consent table and judges every event, so the table needs no lock and an
//! event is always judged with every consent record applied so far. librdkafka's own threads do
//! the network I/O and compression.

mod batch;
mod effects;
mod freshness;
mod hold;
mod input_pause;
mod judge;
mod read_again;
mod rebalance;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::Offset;

use crate::clock::now_ms;
use crate::config::{Config, ConsentMode, Guarantee};
use crate::consent::ConsentFollower;
use crate::decision::Rule;
use crate::delivery::limits::WriteLimits;
use crate::delivery::transaction::Outcome;
use crate::delivery::{self, Delivery, Settings, Topics, WriteFailed};
use crate::kafka::commit::PendingCommit;
use crate::kafka::{self, StartupError};
use crate::telemetry::{self, ConsentMetrics, EventMetrics};
use crate::vocabulary::Vocabulary;
use batch::Batch;
use effects::{Effects, Republisher};
use freshness::Freshness;
use hold::Hold;
use input_pause::InputPause;
use judge::Judge;
use read_again::ReadAgain;
use rebalance::EventConsumerContext;

pub use crate::consent::republish::REPUBLISHED_HEADER;

/// Consent records applied per turn once running.
pub(super) const CONSENT_RECORDS_PER_TURN: usize = 10_000;
/// How long an idle loop waits for an event.
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// How often an idle enforcer checks that it can still read the consent topic.
pub(super) const FRESHNESS_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one consent poll waits while catching up.
pub(super) const CATCH_UP_SLICE: Duration = Duration::from_millis(5);
/// At most this much of an at-least-once stop's deadline is kept for the last commit and
/// for leaving the group (a quarter of it, if that is less).
const STOP_RESERVE: Duration = Duration::from_secs(5);

/// The part of an at-least-once stop's deadline that drains leave to the commit and the close.
pub(crate) fn stop_reserve(drain_timeout: Duration) -> Duration {
    (drain_timeout / 4).min(STOP_RESERVE)
}

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
    /// Set with `stopping`: when the stop must be done (`delivery.drain_timeout_secs` later).
    pub stop_deadline: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// Runs the enforcer until `signals.stopping` is set or a write fails for good.
pub fn run(config: &Config, signals: &Signals) -> Result<(), PipelineError> {
    // One deadline for every wait on the cluster before the consent table is read.
    let startup_secs = config.kafka.startup_timeout_secs;
    let deadline = Instant::now() + Duration::from_secs(startup_secs);
    let step_failed = |step| {
        move |source| StartupError::Step {
            step,
            secs: startup_secs,
            source,
        }
    };
    let partitions = kafka::check_topics(config, deadline)?;
    if config.consent.mode == ConsentMode::Copartitioned {
        kafka::check_copartitioned(config, &partitions)?;
    }
    let limits = match kafka::admin_config(config)
        .create_with_context(kafka::KafkaContext::new(None))
    {
        Ok(admin) => WriteLimits::read(
            config,
            &admin,
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1)),
        ),
        Err(error) => {
            tracing::warn!(%error, "cannot create an admin client to read the topics' max.message.bytes");
            WriteLimits::of_producer(config)
        }
    };
    let mut vocabulary = Vocabulary::from_config(config);
    let rules = Rule::from_config(config, &mut vocabulary);
    let vocabulary = Arc::new(vocabulary);
    telemetry::describe();
    telemetry::register_known_series();
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
    let producer_config = kafka::producer_config(config);
    let delivery = Delivery::new(
        &producer_config,
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
            startup_timeout: Duration::from_secs(startup_secs),
            transaction_timeout: delivery::transaction_timeout(&producer_config),
            init_deadline: deadline,
        },
        EventMetrics::register(destinations),
        metrics::counter!(telemetry::CONSENT_RECORDS_REPUBLISHED),
        signals.stopping.clone(),
        signals.stop_deadline.clone(),
    )
    .map_err(step_failed("starting the producer"))?;
    let delivery = Arc::new(delivery);

    let consent_partitions = partitions.get(&config.consent.topic).copied().unwrap_or(1);
    let mut follower = ConsentFollower::start(
        config,
        consent_partitions,
        vocabulary.clone(),
        ConsentMetrics::register(),
        deadline,
    )
    .map_err(step_failed("starting to read the consent topic"))?;
    let drain_timeout = Duration::from_secs(config.delivery.drain_timeout_secs);
    let hold = hold_topic.as_ref().map(|topic| {
        RefCell::new(Hold::new(
            topic.clone(),
            config.hold.max_age.as_millis(),
            config.hold.max_bytes,
            config.delivery.guarantee == Guarantee::ExactlyOnce,
        ))
    });
    let mut loading = Effects {
        delivery: &delivery,
        vocabulary: &vocabulary,
        consent_topic: &config.consent.topic,
        drain_timeout,
        consumer: None,
        hold: hold.as_ref(),
        republisher: Republisher {
            first_input_partitions: config
                .input
                .topics
                .first()
                .and_then(|topic| partitions.get(topic))
                .and_then(|&n| i32::try_from(n).ok())
                .unwrap_or(1)
                .max(1),
        },
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
        dead_letter_payload: config.dead_letter.payload,
        limits,
        when_missing: config.consent.when_missing,
        max_event_bytes: config.input.max_event_bytes,
        // Never shorter than the hold's own age limit: a short history window (a memory
        // setting) must not turn the hold off for events a few minutes old.
        hold_window_ms: config
            .consent
            .history_window
            .as_millis()
            .max(config.hold.max_age.as_millis()),
        hold_topic: hold_topic.as_deref(),
        copartitioned: config.consent.mode == ConsentMode::Copartitioned,
    };
    let mut last_expiry_scan = Instant::now();
    let copartitioned = config.consent.mode == ConsentMode::Copartitioned;
    let mut followed_version = u64::MAX;
    let mut follow_error = None;
    let mut freshness = Freshness::new(config);
    let commit_interval = Duration::from_millis(config.delivery.commit_interval_ms);
    let mut last_commit = Instant::now();
    // The periodic commit sent and not answered yet (dropped before the consumer).
    let mut pending_commit: Option<PendingCommit> = None;
    // Events read but not yet judged wait until the table has caught up with the consent
    // topic as it was after they were read. While one batch waits for (or is judged with) its
    // end-offset sample, the next is read and its sample requested, so that at full load the
    // sample's round trip overlaps with judging instead of adding to it.
    let mut current: Option<Batch<'_>> = None;
    let mut ahead: Option<Batch<'_>> = None;
    let mut input_pause = InputPause::default();
    let read_again = |batches: [&mut Option<Batch<'_>>; 2]| {
        after_rewind(&delivery, &consumer, batches, hold.as_ref(), drain_timeout);
    };
    while !signals.stopping.load(Ordering::Relaxed) && delivery.failure().is_none() {
        if current.is_none() {
            current = ahead.take();
        }
        if current.is_none() {
            // Only an idle loop waits for events.
            current = Batch::read(&consumer, &delivery, IDLE_WAIT);
        }
        if current.is_some() && ahead.is_none() {
            ahead = Batch::read(&consumer, &delivery, Duration::ZERO);
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
        // partitions. At full load `current` already has its sample (asked for when it was read
        // ahead, a turn ago) and only `ahead` asks now.
        for batch in [&mut current, &mut ahead].into_iter().flatten() {
            if batch.sample.is_none() {
                batch.sample = Some(follower.request_sample(freshness.max_wait));
            }
        }
        follower.poll(Duration::ZERO, CONSENT_RECORDS_PER_TURN, &mut effects);
        if current.is_some() || freshness.probe_due() {
            // Caught up with the stable offsets, but acknowledged records may sit above them
            // behind a transaction left open: then the table is not current either. Asked
            // before catching up: once they stop being hidden, catching up waits for them.
            let hidden = follower.hidden_for() >= freshness.max_staleness;
            let caught_up = match &mut current {
                Some(batch) => freshness.catch_up(&mut batch.sample, &mut follower, &mut effects),
                None => freshness.probe(&mut follower, &mut effects),
            };
            let fresh = caught_up && !hidden;
            freshness.report(fresh, hidden, signals);
            if let (false, Some(waiting)) = (fresh, ahead.as_mut()) {
                input_pause.serve(&consumer, &delivery, waiting);
            }
            read_again([&mut current, &mut ahead]);
            if fresh {
                let hold_full = hold.as_ref().is_some_and(|h| h.borrow().full());
                input_pause.resume(
                    &consumer,
                    hold_full.then_some(hold_topic.as_deref()).flatten(),
                );
                if let Some(batch) = current.take() {
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
                if let Some(hold) = &hold {
                    let scan = last_expiry_scan.elapsed() >= FRESHNESS_PROBE_INTERVAL;
                    if scan {
                        last_expiry_scan = Instant::now();
                    }
                    serve_hold(&judge, &follower, hold, &consumer, scan);
                }
            }
        }
        delivery.poll();
        match delivery.guarantee() {
            Guarantee::ExactlyOnce => {
                if delivery.transaction_due() {
                    delivery.commit_transaction(&consumer, drain_timeout);
                }
                read_again([&mut current, &mut ahead]);
            }
            Guarantee::AtLeastOnce => {
                if let Some(answer) = pending_commit
                    .as_ref()
                    .and_then(|p| p.answer(Duration::ZERO))
                {
                    delivery.commit_answered(&answer);
                    pending_commit = None;
                    if !answer.committed() {
                        telemetry::error("commit", "rejected");
                        tracing::warn!(error = ?answer.result, "offset commit rejected; committing again next time");
                    }
                }
                // One commit at a time: the next one is sent once this one is answered.
                if pending_commit.is_none()
                    && !freshness.stale
                    && last_commit.elapsed() >= commit_interval
                {
                    match delivery.commit_async(&consumer) {
                        Ok(pending) => pending_commit = pending,
                        Err(error) => {
                            telemetry::error("commit", "async");
                            tracing::warn!(%error, "offset commit failed; retrying with the next commit");
                        }
                    }
                    last_commit = Instant::now();
                }
            }
        }
    }
    // Events read but not judged are not committed: they are read again after a restart.
    drop(current);
    drop(ahead);

    // Its answer no longer matters: the last commit covers it.
    drop(pending_commit);
    // Overrides of stale consent records still waiting for a copy: written now, so that the
    // drain below covers them.
    follower.flush_overrides(&mut effects);
    set_ready(signals, false);
    tracing::info!("stopping: draining in-flight writes");
    // One deadline for the whole stop: draining, the last commit (or abort), and leaving the
    // group all end within delivery.drain_timeout_secs of the signal (set with it), or of
    // now when the loop ended for another reason.
    delivery.stop_by(Instant::now() + drain_timeout);
    let drained = match delivery.guarantee() {
        Guarantee::ExactlyOnce => {
            // An abort for a write left unsent at the stop is clean: nothing is lost, its
            // events are read again by the next owner.
            let committed = delivery.commit_transaction(&consumer, drain_timeout)
                != Outcome::Aborted
                || delivery.not_sent_at_stop();
            // Re-published consent states are written outside the transaction: the stop is
            // clean only once they are acknowledged too (one lost could let compaction keep
            // the stale record it overrides).
            let republished = delivery.drain(None, delivery.bounded(drain_timeout));
            committed && republished
        }
        Guarantee::AtLeastOnce => {
            // Draining, the last commit and leaving the group share the deadline: the commit
            // and the close keep a reserve, so that they are tried even after a drain that
            // ran out of time (what was acknowledged is still committed).
            let reserve = stop_reserve(drain_timeout);
            let drained = delivery.drain(
                None,
                delivery.bounded(drain_timeout).saturating_sub(reserve),
            );
            let commit_for = delivery.bounded(drain_timeout).saturating_sub(reserve / 2);
            if let Err(error) = delivery.commit_within(&consumer, None, commit_for) {
                telemetry::error("commit", "shutdown");
                tracing::warn!(%error, "final offset commit failed; uncommitted events will be redelivered");
            }
            drained
        }
    };
    // Leaving the group revokes every partition: the rebalance callback drains and commits
    // what the last commit could not, keeping the reserve for the leave itself.
    consumer.unsubscribe();
    close_by(consumer, Instant::now() + delivery.bounded(drain_timeout));
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

/// Closes the event consumer (leaving the group), waiting for it until `deadline` at most:
/// librdkafka's own close waits for the coordinator, as long as the session lasts when the
/// broker does not answer. Past the deadline the consumer is abandoned (the process is
/// exiting; the group notices when the session times out).
fn close_by(consumer: BaseConsumer<EventConsumerContext>, deadline: Instant) {
    if consumer.close_queue().is_ok() {
        while !consumer.closed() && Instant::now() < deadline {
            consumer.poll(Duration::from_millis(20));
        }
    }
    if consumer.closed() {
        drop(consumer);
    } else {
        telemetry::error("consume", "close_timeout");
        tracing::warn!(
            "the group coordinator did not answer before the stop's deadline; leaving without it"
        );
        std::mem::forget(consumer);
    }
}

/// After an aborted transaction rewound the consumer, events read but not judged are dropped
/// and read again: every partition with dropped events is sought back to the first of them
/// (or to the rewind offset, if earlier), since events read after the abort's own seek are
/// among them; held events of rewound partitions are forgotten from the rewind offsets on.
fn after_rewind(
    delivery: &Delivery,
    consumer: &BaseConsumer<EventConsumerContext>,
    batches: [&mut Option<Batch<'_>>; 2],
    hold: Option<&RefCell<Hold>>,
    timeout: Duration,
) {
    let rewound = delivery.take_rewound();
    if rewound.is_empty() {
        return;
    }
    let mut read_again = ReadAgain::default();
    for batch in batches.into_iter().filter_map(Option::take) {
        for (index, message) in batch.events.iter().enumerate() {
            let Some(input) = delivery.input_partition(message.topic(), message.partition()) else {
                continue;
            };
            // Read under an earlier assignment: the consumer reads it again from the
            // committed offset anyway, and a seek to it could skip what lies before.
            if !delivery.owned_under_assignment_before(input, batch.assignments_before(index)) {
                continue;
            }
            read_again.dropped(input, message.topic(), message.offset());
        }
    }
    for (topic, partition, offset) in read_again.seeks(&rewound) {
        // Bounded by the stop's deadline too: a seek waits for the partition's broker thread.
        let timeout = delivery.bounded(timeout);
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
        judge.resolve(table, event);
    }
    if !scan {
        return;
    }
    let expired = hold.borrow_mut().take_expired(now_ms());
    for event in expired {
        let table = follower.table_for(i32::from(event.input.partition));
        judge.resolve(table, event);
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

pub(super) fn set_ready(signals: &Signals, ready: bool) {
    signals.ready.store(ready, Ordering::SeqCst);
    metrics::gauge!(telemetry::READY).set(if ready { 1.0 } else { 0.0 });
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
