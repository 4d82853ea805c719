//! Writes to destination, dead-letter and consent topics, and the ledger that turns their
//! acknowledgements into committable input offsets (`progress`).
//!
//! Where the offsets are committed depends on the guarantee: `at_least_once.rs` commits them to
//! the consumer group, `exactly_once.rs` commits them in the transaction with the writes;
//! `commits.rs` is the one interface the pipeline drives them through.
//!
//! Every method runs on the pipeline thread: librdkafka runs delivery callbacks inside
//! `poll`, and rebalance callbacks inside the consumer's `poll`, both called from that thread.
//! The mutexes below are therefore never contended; they exist because librdkafka's contexts
//! must be `Sync`.

pub mod at_least_once;
pub mod commits;
pub mod dead_letter;
pub mod exactly_once;
pub mod headers;
pub mod limits;
pub mod producer_stats;
pub mod progress;
pub mod tag;
pub mod transaction;

mod acks;
mod failure;

pub(crate) use acks::serve_queued;
use acks::{create_producer, AckContext};
pub use failure::DeliveryFailure;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use self::producer_stats::ProducerStats;

use crate::config::Guarantee;
use crate::input::{Assignments, InputPartition};
use crate::internal_events::{self as events, InternalEvent};
use crate::telemetry::{self, EventMetrics};
use progress::Progress;
use tag::{Tag, Target};

/// How long `send` waits on a full producer queue before saying so (it keeps waiting: the
/// writes fail for good only at librdkafka's `message.timeout.ms`).
const QUEUE_FULL_WARNING: Duration = Duration::from_secs(10);

/// How long one step of [`Delivery::drain`] waits for acknowledgements.
const DRAIN_POLL: Duration = Duration::from_millis(1);

use crate::sync::lock;

pub struct Delivery {
    /// Replaced only in exactly-once mode, after an error that poisons the transactional
    /// producer (see `transaction.rs`).
    producer: ArcSwap<BaseProducer<AckContext>>,
    /// How the producer was made, to make its replacement the same way.
    producer_config: rdkafka::ClientConfig,
    startup_timeout: Duration,
    /// Exactly-once only: writes re-published consent states outside any transaction. In a
    /// transaction they would hold back the consent topic's last stable offset, and with it
    /// every instance's view of consent acknowledged after them, until the commit.
    republisher: Option<BaseProducer<AckContext>>,
    progress: Mutex<Progress>,
    /// The input partitions owned, and the names of the topics they belong to.
    inputs: Arc<Assignments>,
    failure: Mutex<Option<DeliveryFailure>>,
    /// Where each target writes, for error messages.
    destination_topics: Vec<String>,
    dead_letter_topic: String,
    consent_topic: String,
    hold_topic: Option<String>,
    metrics: EventMetrics,
    republished: metrics::Counter,
    republish_in_flight: Mutex<usize>,
    stopping: Arc<AtomicBool>,
    /// A write was not sent because the queue was full while stopping.
    not_sent_at_stop: AtomicBool,
    /// Once stopping: when the stop must be done (`delivery.drain_timeout_secs` after the
    /// signal). Every wait is bounded by it from then on, a commit under way included.
    stop_deadline: Arc<Mutex<Option<Instant>>>,
    guarantee: Guarantee,
    transaction: Mutex<transaction::Transaction>,
    transaction_interval: Duration,
    transaction_max_events: usize,
    transaction_timeout: Duration,
    transaction_seconds: metrics::Histogram,
}

/// Topic names the delivery layer writes to or reports on.
pub struct Topics {
    /// The input partitions owned, and the names of the topics the group reads.
    pub inputs: Arc<Assignments>,
    pub destinations: Vec<String>,
    pub dead_letter: String,
    pub consent: String,
    pub hold: Option<String>,
}

/// How delivery is tied to input offsets, from `[delivery]`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub guarantee: Guarantee,
    pub transaction_interval: Duration,
    pub transaction_max_events: usize,
    /// Bounds `init_transactions` when the producer is replaced.
    pub startup_timeout: Duration,
    /// The producer's `transaction.timeout.ms`: past it the broker aborts a transaction.
    pub transaction_timeout: Duration,
    /// Start-up's deadline: transient errors of `init_transactions` at start are retried
    /// until then.
    pub init_deadline: Instant,
}

/// librdkafka's default `transaction.timeout.ms`.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The `transaction.timeout.ms` a producer config sets, or librdkafka's default.
pub fn transaction_timeout(producer_config: &rdkafka::ClientConfig) -> Duration {
    producer_config
        .get("transaction.timeout.ms")
        .and_then(|ms| ms.trim().parse().ok())
        .map_or(DEFAULT_TRANSACTION_TIMEOUT, Duration::from_millis)
}

impl Delivery {
    pub fn new(
        producer_config: &rdkafka::ClientConfig,
        topics: Topics,
        settings: Settings,
        metrics: EventMetrics,
        republished: metrics::Counter,
        stopping: Arc<AtomicBool>,
        stop_deadline: Arc<Mutex<Option<Instant>>>,
    ) -> KafkaResult<Delivery> {
        let producer = create_producer(producer_config, Some(ProducerStats::register()))?;
        let mut republisher = None;
        if settings.guarantee == Guarantee::ExactlyOnce {
            // Fences an earlier incarnation with the same transactional.id and aborts its
            // open transaction.
            crate::kafka::retry(
                settings.init_deadline,
                "initialising transactions",
                |left| producer.init_transactions(left),
            )?;
            let mut plain = producer_config.clone();
            plain.remove("transactional.id");
            republisher = Some(create_producer(&plain, None)?);
        }
        Ok(Delivery {
            producer: ArcSwap::from_pointee(producer),
            producer_config: producer_config.clone(),
            startup_timeout: settings.startup_timeout,
            republisher,
            progress: Mutex::new(Progress::default()),
            inputs: topics.inputs,
            failure: Mutex::new(None),
            destination_topics: topics.destinations,
            dead_letter_topic: topics.dead_letter,
            consent_topic: topics.consent,
            hold_topic: topics.hold,
            metrics,
            republished,
            republish_in_flight: Mutex::new(0),
            stopping,
            not_sent_at_stop: AtomicBool::new(false),
            stop_deadline,
            guarantee: settings.guarantee,
            transaction: Mutex::new(transaction::Transaction::default()),
            transaction_interval: settings.transaction_interval,
            transaction_max_events: settings.transaction_max_events,
            transaction_timeout: settings.transaction_timeout,
            transaction_seconds: metrics::histogram!(telemetry::TRANSACTION_COMMIT_SECONDS),
        })
    }

    /// True if stopping left a write unsent (a full queue): its event is read again by the
    /// next owner, and in exactly-once the last transaction was aborted for it.
    pub fn not_sent_at_stop(&self) -> bool {
        self.not_sent_at_stop.load(Ordering::Relaxed)
    }

    /// From now on, every wait (drains, commits, aborts, revocations) ends by `deadline`,
    /// unless the stop signal set an earlier one.
    pub fn stop_by(&self, deadline: Instant) {
        lock(&self.stop_deadline).get_or_insert(deadline);
    }

    /// `timeout`, or what is left of the stop's deadline if that is less.
    pub fn bounded(&self, timeout: Duration) -> Duration {
        timeout.min(
            self.cut(Instant::now() + timeout, Duration::ZERO)
                .saturating_duration_since(Instant::now()),
        )
    }

    /// `deadline`, or the stop's deadline less `reserve` if that is earlier.
    pub(super) fn cut(&self, deadline: Instant, reserve: Duration) -> Instant {
        match *lock(&self.stop_deadline) {
            Some(stop) => deadline.min(stop.checked_sub(reserve).unwrap_or(stop)),
            None => deadline,
        }
    }

    /// True once SIGTERM or SIGINT asked the service to stop.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn metrics(&self) -> &EventMetrics {
        &self.metrics
    }

    pub fn guarantee(&self) -> Guarantee {
        self.guarantee
    }

    /// The input partitions owned, and how they are numbered.
    pub fn inputs(&self) -> &Assignments {
        &self.inputs
    }

    /// Starts tracking an input event; its writes are tagged with the returned sequence.
    /// In exactly-once mode the event joins the open transaction (opening one if needed); if
    /// none can be opened the error is recorded and the service stops.
    pub fn begin(&self, input: InputPartition, offset: i64) -> u32 {
        if self.guarantee == Guarantee::ExactlyOnce {
            if let Err(error) = self.ensure_transaction() {
                self.transaction_failed(error.clone());
                lock(&self.failure).get_or_insert(DeliveryFailure::Transaction(error));
            }
            self.transaction_event(input, offset);
        }
        lock(&self.progress).begin(input, offset)
    }

    /// Puts a held event being resolved now into the open transaction (exactly-once).
    pub fn rejoin(&self, input: InputPartition, offset: i64) {
        if self.guarantee == Guarantee::ExactlyOnce {
            if let Err(error) = self.ensure_transaction() {
                self.transaction_failed(error);
            }
            self.transaction_event(input, offset);
        }
    }

    /// Parks the event numbered `seq` (held: not done until resolved).
    pub fn park(&self, input: InputPartition, seq: u32) {
        lock(&self.progress).park(input, seq);
    }

    /// Resolves a parked event once its writes (if any) are sent.
    pub fn unpark(&self, input: InputPartition, seq: u32) {
        let mut progress = lock(&self.progress);
        progress.unpark(input, seq);
        self.metrics.in_flight.set(progress.in_flight(None) as f64);
    }

    /// Ends the input event numbered `seq` (begun with [`Delivery::begin`]) once all its
    /// writes are sent.
    pub fn end(&self, input: InputPartition, seq: u32) {
        let mut progress = lock(&self.progress);
        progress.end(input, seq);
        self.metrics.in_flight.set(progress.in_flight(None) as f64);
    }

    /// Sends one write. A full local queue is waited out (serving acknowledgements meanwhile)
    /// unless the service is stopping. An error here means the write was not sent; the caller's
    /// event then never completes, so its offset is never committed.
    pub fn send(&self, record: BaseRecord<'_, [u8], [u8], usize>) -> Result<(), KafkaError> {
        let tag = Tag::decode(record.delivery_opaque);
        let main;
        let producer = match (&self.republisher, tag.target) {
            (Some(republisher), Target::Republish) => republisher,
            _ => {
                if self.guarantee == Guarantee::ExactlyOnce {
                    self.ensure_transaction()?;
                }
                main = self.producer.load();
                &**main
            }
        };
        let mut record = record;
        // When a full local queue was first met, and whether that wait was reported.
        let mut full_since: Option<Instant> = None;
        let mut reported = false;
        loop {
            match producer.send(record) {
                Ok(()) => {
                    match tag.target {
                        Target::Republish => *lock(&self.republish_in_flight) += 1,
                        _ => lock(&self.progress).add_write_to(tag.input, tag.seq),
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if !self.stopping.load(Ordering::Relaxed) =>
                {
                    record = returned;
                    let since = *full_since.get_or_insert_with(Instant::now);
                    if !reported && since.elapsed() >= QUEUE_FULL_WARNING {
                        reported = true;
                        tracing::warn!(
                            waited_secs = since.elapsed().as_secs(),
                            "the producer queue is still full: waiting for the brokers to acknowledge writes"
                        );
                    }
                    producer.poll(Duration::from_millis(1));
                    self.settle();
                }
                Err((error @ KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Stopping with a full queue: not sent, and no failure. Its event is not
                    // done, so nothing from it on is committed and the next owner reads it
                    // again; in exactly-once its transaction is aborted rather than
                    // committed without it.
                    if tag.target != Target::Republish {
                        lock(&self.progress).fail_unsent(tag.input, tag.seq);
                        if self.guarantee == Guarantee::ExactlyOnce {
                            self.transaction_failed(error.clone());
                        }
                        self.not_sent_at_stop.store(true, Ordering::Relaxed);
                    } else {
                        // A re-published state not sent is not clean (exit 1): the restart
                        // reads the stale record again and re-publishes then.
                        self.record_failure(&tag, error.clone());
                    }
                    return Err(error);
                }
                Err((error, _)) => {
                    if tag.target != Target::Republish {
                        lock(&self.progress).fail_unsent(tag.input, tag.seq);
                    }
                    self.record_failure(&tag, error.clone());
                    return Err(error);
                }
            }
        }
    }

    /// Serves librdkafka's queue without blocking and settles acknowledgements.
    pub fn poll(&self) {
        serve_queued(&self.producer.load());
        if let Some(republisher) = &self.republisher {
            serve_queued(republisher);
        }
        self.settle();
    }

    /// Applies the acknowledgements collected since the last call.
    pub fn settle(&self) {
        let mut acks = std::mem::take(&mut *lock(&self.producer.load().context().acks));
        if let Some(republisher) = &self.republisher {
            acks.append(&mut lock(&republisher.context().acks));
        }
        if acks.is_empty() {
            return;
        }
        let mut progress = lock(&self.progress);
        for ack in acks {
            let tag = Tag::decode(ack.tag);
            match (ack.error, tag.target) {
                (None, Target::Republish) => {
                    *lock(&self.republish_in_flight) -= 1;
                    self.republished.increment(1);
                }
                (Some(error), Target::Republish) => {
                    *lock(&self.republish_in_flight) -= 1;
                    self.record_failure(&tag, error);
                }
                (None, target) if self.guarantee == Guarantee::ExactlyOnce => {
                    progress.acknowledge(tag.input, tag.seq);
                    self.transaction_ack(target);
                }
                (Some(error), _) if self.guarantee == Guarantee::ExactlyOnce => {
                    // The transaction will abort and its events be judged again.
                    progress.acknowledge(tag.input, tag.seq);
                    // Once per transaction: an abort purges every write in flight, and each
                    // comes back failed.
                    if self.transaction_failed(error.clone()) {
                        events::WriteFailedInTransaction { error: &error }.emit();
                    }
                }
                (None, target) => {
                    progress.acknowledge(tag.input, tag.seq);
                    match target {
                        Target::Destination(i) => {
                            self.metrics.delivered[usize::from(i)].increment(1)
                        }
                        Target::DeadLetter(reason) => self.metrics.dead_lettered(reason),
                        Target::Hold => self.metrics.held.iter().for_each(|c| c.increment(1)),
                        Target::Learned => self.metrics.learned.increment(1),
                        Target::Republish => {}
                    }
                }
                (Some(error), _) => {
                    progress.fail(tag.input, tag.seq);
                    self.record_failure(&tag, error);
                }
            }
        }
        self.metrics.in_flight.set(progress.in_flight(None) as f64);
    }

    fn record_failure(&self, tag: &Tag, error: KafkaError) {
        let topic = match tag.target {
            Target::Destination(i) => self.destination_topics[usize::from(i)].clone(),
            Target::DeadLetter(_) => self.dead_letter_topic.clone(),
            Target::Republish | Target::Learned => self.consent_topic.clone(),
            Target::Hold => self.hold_topic.clone().unwrap_or_default(),
        };
        let mut failure = lock(&self.failure);
        if failure.is_some() {
            // Stopping already: the first failure was reported.
            return;
        }
        events::WriteFailedForGood {
            topic: &topic,
            error: &error,
            fencing: self.fencing(&error),
        }
        .emit();
        *failure = Some(DeliveryFailure::Write { topic, error });
    }

    /// Events read but not judged could not be sought back to after an aborted transaction:
    /// the service stops without committing past them (a restart reads them again).
    pub fn fail_to_read_again(&self, topic: &str, error: KafkaError) {
        lock(&self.failure).get_or_insert(DeliveryFailure::Seek {
            topic: topic.to_owned(),
            error,
        });
    }

    /// The first write that failed for good, if any.
    pub fn failure(&self) -> Option<DeliveryFailure> {
        lock(&self.failure).clone()
    }

    /// Waits until every write (of the given partitions, or all writes including consent
    /// re-publishes) is acknowledged, a write fails, or `timeout` passes. True if all were
    /// acknowledged.
    pub fn drain(&self, only: Option<&[InputPartition]>, timeout: Duration) -> bool {
        self.drain_writes(only, only.is_none(), timeout, Duration::ZERO)
    }

    /// Waits for the event writes (not the re-published consent states) to be acknowledged.
    pub fn drain_events(&self, timeout: Duration) -> bool {
        self.drain_writes(None, false, timeout, Duration::ZERO)
    }

    /// Like [`Delivery::drain`], counting re-published consent states only if `republished`;
    /// once stopping, it ends `reserve` before the stop's deadline.
    pub(super) fn drain_writes(
        &self,
        only: Option<&[InputPartition]>,
        republished: bool,
        timeout: Duration,
        reserve: Duration,
    ) -> bool {
        let until = Instant::now() + timeout;
        loop {
            // Again each time: a stop can come during the wait.
            let deadline = self.cut(until, reserve);
            self.settle();
            let pending = lock(&self.progress).in_flight(only)
                + if republished {
                    *lock(&self.republish_in_flight)
                } else {
                    0
                };
            if pending == 0 {
                return true;
            }
            if self.failure().is_some() || Instant::now() >= deadline {
                tracing::warn!(
                    pending,
                    "writes still unacknowledged; not committing past them"
                );
                return false;
            }
            // rdkafka's poll returns only when its timeout has passed, so a short one: the
            // wait ends within about a millisecond of the last acknowledgement.
            self.producer.load().poll(DRAIN_POLL);
            if let Some(republisher) = &self.republisher {
                serve_queued(republisher);
            }
        }
    }

    /// Offsets to commit, as a list for the consumer (or the transaction).
    fn offset_list(&self, offsets: &[(InputPartition, i64)]) -> KafkaResult<TopicPartitionList> {
        let mut list = TopicPartitionList::with_capacity(offsets.len());
        for (input, offset) in offsets {
            list.add_partition_offset(
                self.inputs.topic_name(*input),
                i32::from(input.partition),
                Offset::Offset(*offset),
            )?;
        }
        Ok(list)
    }

    /// Stops owning and tracking revoked partitions.
    pub fn remove(&self, inputs: &[InputPartition]) {
        self.inputs.unassign(inputs);
        lock(&self.progress).remove(inputs);
    }

    /// Flushes librdkafka's queue (bounded); used once everything else is done.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        let result = self.producer.load().flush(timeout);
        if let Some(republisher) = &self.republisher {
            republisher.flush(timeout)?;
        }
        self.settle();
        result
    }
}

#[cfg(test)]
mod tests;
