//! Start-up: check the cluster and the topics, make the producer and the consent follower,
//! and read the consent table to its end before any event is judged.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::effects::{Effects, Republisher};
use super::hold::Hold;
use super::{PipelineError, Signals, CONSENT_RECORDS_PER_TURN};
use crate::config::{Config, ConsentMode, Guarantee};
use crate::consent::ConsentFollower;
use crate::decision::{Law, Rule};
use crate::delivery::limits::WriteLimits;
use crate::delivery::{self, Delivery, Settings, Topics};
use crate::input::Assignments;
use crate::kafka::{self, StartupError};
use crate::telemetry::{self, ConsentMetrics, EventMetrics};
use crate::vocabulary::Vocabulary;

/// What start-up made, for the loop.
pub(super) struct Started {
    pub(super) delivery: Arc<Delivery>,
    pub(super) follower: ConsentFollower,
    pub(super) vocabulary: Arc<Vocabulary>,
    pub(super) rules: Vec<Rule>,
    pub(super) law: Law,
    pub(super) limits: WriteLimits,
    pub(super) hold: Option<RefCell<Hold>>,
    pub(super) republisher: Republisher,
}

/// Everything before the consent table is read, within `kafka.startup_timeout`.
pub(super) fn start(config: &Config, signals: &Signals) -> Result<Started, PipelineError> {
    // One deadline for every wait on the cluster before the consent table is read.
    let startup_timeout = config.kafka.startup_timeout();
    let described = startup_timeout.described();
    let deadline = Instant::now() + startup_timeout.value;
    let step_failed = |step| {
        let timeout = described.clone();
        move |source| StartupError::Step {
            step,
            timeout,
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
    let law = Law::from_config(config, &vocabulary);
    let vocabulary = Arc::new(vocabulary);

    let hold_topic = config.hold_topic().map(str::to_owned);
    // The hold topic is read like an input topic, by the same group.
    let input_topics = config.group_topics();
    let destinations = config.destinations.iter().map(|d| d.name.as_str());
    let producer_config = kafka::producer_config(config);
    let inputs = Arc::new(Assignments::new(input_topics));
    let delivery = Delivery::new(
        &producer_config,
        Topics {
            inputs,
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
            transaction_interval: config.delivery.transaction_interval().value,
            transaction_max_events: config.delivery.transaction_max_events,
            startup_timeout: startup_timeout.value,
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
    let follower = ConsentFollower::start(
        config,
        consent_partitions,
        vocabulary.clone(),
        ConsentMetrics::register(),
        deadline,
    )
    .map_err(step_failed("starting to read the consent topic"))?;
    let hold = hold_topic.map(|topic| {
        RefCell::new(Hold::new(
            topic,
            config.hold.max_age.as_millis(),
            config.hold.max_bytes,
            config.delivery.guarantee == Guarantee::ExactlyOnce,
        ))
    });
    Ok(Started {
        delivery,
        follower,
        vocabulary,
        rules,
        law,
        limits,
        hold,
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
    })
}

/// Reads the consent topic to its end. False if asked to stop first.
pub(super) fn load_table(
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

pub(super) fn shut_down_before_start(
    delivery: &Delivery,
    drain_timeout: Duration,
) -> Result<(), PipelineError> {
    delivery.drain(None, drain_timeout);
    match delivery.failure() {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}
