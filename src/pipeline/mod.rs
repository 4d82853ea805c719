//! The loop that ties the data path together, on one dedicated thread:
//! [`start`](start::start) (check the cluster, read the consent table) -> join the group ->
//! [`turn`](running::Running::turn) after turn (read, wait for fresh consent, judge, write,
//! settle, commit) -> [`stop`] (drain, last commit, leave the group).
//!
//! Where things are: the decision is `crate::decision`; the freshness wait `freshness.rs`; the
//! commit `crate::delivery::at_least_once` and the transaction `crate::delivery::exactly_once`
//! (behind `crate::delivery::commits`); the hold `hold.rs` and `serve_hold.rs`; what consent
//! records ask of the pipeline `effects.rs`; revocations of input partitions `rebalance.rs`.
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
pub mod learn;
mod read_again;
mod rebalance;
mod running;
mod serve_hold;
mod start;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::config::{Config, ConsentMode};
use crate::delivery::commits::Commits;
use crate::delivery::DeliveryFailure;
use crate::internal_events::{self as events, InternalEvent};
use crate::kafka::{self, StartupError};
use crate::telemetry;
use effects::Effects;
use freshness::Freshness;
use input_pause::InputPause;
use judge::Judge;
use rebalance::EventConsumerContext;
use running::Running;
use start::Started;

pub use crate::consent::republish::REPUBLISHED_HEADER;

/// Consent records applied per turn once running.
pub(super) const CONSENT_RECORDS_PER_TURN: usize = 10_000;
/// How often an idle enforcer checks that it can still read the consent topic.
pub(super) const FRESHNESS_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one consent poll waits while catching up.
pub(super) const CATCH_UP_SLICE: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("Kafka client error: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Delivery(#[from] DeliveryFailure),
    #[error("writes were still unacknowledged after {setting}; their events were not committed and will be redelivered")]
    DrainTimeout {
        /// `delivery.drain_timeout`, as the config gives it (with its key).
        setting: String,
    },
}

/// Flags shared with the async side: `stopping` is set on SIGTERM/SIGINT, `ready` is what
/// /readyz reports.
#[derive(Clone, Default)]
pub struct Signals {
    pub stopping: Arc<AtomicBool>,
    pub ready: Arc<AtomicBool>,
    /// Set with `stopping`: when the stop must be done (`delivery.drain_timeout` later).
    pub stop_deadline: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// Runs the enforcer until `signals.stopping` is set or a write fails for good.
pub fn run(config: &Config, signals: &Signals) -> Result<(), PipelineError> {
    let Started {
        delivery,
        mut follower,
        vocabulary,
        rules,
        law,
        limits,
        hold,
        republisher,
    } = start::start(config, signals)?;
    let drain_timeout = config.delivery.drain_timeout().value;
    let mut loading = Effects {
        delivery: &delivery,
        vocabulary: &vocabulary,
        consent_topic: &config.consent.topic,
        consent_format: config.consent.format,
        deletion_topics: config
            .destinations
            .iter()
            .filter_map(|d| Some((d.name.as_str(), d.deletion_topic.as_deref()?)))
            .collect(),
        privacy_topic: config.privacy.as_ref().map(|p| p.topic.as_str()),
        drain_timeout,
        consumer: None,
        hold: hold.as_ref(),
        republisher,
        rewound: Vec::new(),
    };
    if !start::load_table(&mut follower, &mut loading, signals) {
        return start::shut_down_before_start(&delivery, drain_timeout);
    }

    let consumer: BaseConsumer<EventConsumerContext> = kafka::event_consumer_config(config)
        .create_with_context(EventConsumerContext::new(delivery.clone(), drain_timeout))?;
    let effects = Effects {
        consumer: Some(&consumer),
        ..loading
    };
    let topics = config.group_topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
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
        law: &law,
        learner: config.consent.learn_from_events.then(|| learn::Learner {
            consent_topic: &config.consent.topic,
            format: config.consent.format,
        }),
        max_event_bytes: config.input.max_event_bytes,
        // Never shorter than the hold's own age limit: a short history window (a memory
        // setting) must not turn the hold off for events a few minutes old.
        hold_window_ms: config
            .consent
            .history_window
            .as_millis()
            .max(config.hold.max_age.as_millis()),
        hold_topic: config.hold_topic(),
        copartitioned: config.consent.mode == ConsentMode::Copartitioned,
    };
    let mut running = Running {
        consumer: &consumer,
        delivery: &delivery,
        follower: &mut follower,
        effects,
        judge,
        hold: hold.as_ref(),
        hold_topic: config.hold_topic(),
        signals,
        drain_timeout,
        copartitioned: config.consent.mode == ConsentMode::Copartitioned,
        freshness: Freshness::new(config),
        commits: Commits::new(
            config.delivery.guarantee,
            config.delivery.commit_interval().value,
            drain_timeout,
        ),
        current: None,
        ahead: None,
        input_pause: InputPause::default(),
        followed_version: u64::MAX,
        last_expiry_scan: Instant::now(),
    };
    let mut follow_error = None;
    while !signals.stopping.load(Ordering::Relaxed) && delivery.failure().is_none() {
        if let Err(error) = running.turn() {
            follow_error = Some(error);
            break;
        }
    }
    let drained = stop(running);
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
            setting: config.delivery.drain_timeout().to_string(),
        });
    }
    tracing::info!("stopped cleanly: every acknowledged event committed");
    Ok(())
}

/// The stop, within one deadline: draining, the last commit (or abort), and leaving the
/// group all end within `delivery.drain_timeout` of the signal (set with it), or of now when
/// the loop ended for another reason. True if every write was acknowledged and committed.
fn stop(running: Running<'_, '_>) -> bool {
    let Running {
        consumer,
        delivery,
        follower,
        mut effects,
        current,
        ahead,
        commits,
        signals,
        drain_timeout,
        ..
    } = running;
    let deadline = Instant::now() + drain_timeout;
    // Events read but not judged are not committed: they are read again after a restart.
    drop(current);
    drop(ahead);
    // Overrides of stale consent records still waiting for a copy: written now, so that the
    // drain below covers them.
    follower.flush_overrides(&mut effects);
    set_ready(signals, false);
    tracing::info!("stopping: draining in-flight writes");
    delivery.stop_by(Instant::now() + drain_timeout);
    let committed = commits.shutdown(delivery, consumer, drain_timeout);
    // Changes not written are written after a restart: their offsets are not committed.
    if !follower.close_audit(deadline) {
        tracing::warn!("stopping before every consent change was written to the audit log: they are written after the restart");
    }
    committed
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
        events::ConsumerCloseTimedOut.emit();
        std::mem::forget(consumer);
    }
}

pub(super) fn set_ready(signals: &Signals, ready: bool) {
    signals.ready.store(ready, Ordering::SeqCst);
    metrics::gauge!(telemetry::READY).set(if ready { 1.0 } else { 0.0 });
}
