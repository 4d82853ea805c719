//! Exactly-once delivery: every write of a batch of events, and the input offsets past those
//! events, commit in one Kafka transaction (KIP-447: offsets are sent with the consumer
//! group's metadata, so a zombie from an older generation is fenced). This file is where the
//! transaction is: opened, committed, aborted, and its producer replaced.
//!
//! Where it is committed: [`ExactlyOnce::tick`] when it is due (age or size),
//! [`before_revocation`] before a consent revocation applies, [`on_revoke`] before partitions
//! are released, and [`ExactlyOnce::shutdown`] at the stop.
//!
//! A transaction is opened lazily by the first event or write after the last commit, and
//! committed when it is due (age or size), before a revocation is applied, before partitions
//! are released, and at shutdown. An abortable error aborts it and rewinds the consumer to the
//! first event of the transaction on each partition still owned, so those events are judged
//! again; their aborted writes are invisible to `read_committed` readers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

use super::producer_stats::ProducerStats;
use super::tag::Target;
use super::{create_producer, lock, serve_queued, Delivery, DeliveryFailure};
use crate::config::Guarantee;
use crate::input::InputPartition;
use crate::internal_events::{self as events, InternalEvent};
use crate::telemetry;

/// Consecutive aborts after which the enforcer gives up (a write that can never succeed
/// would otherwise be retried forever).
const MAX_CONSECUTIVE_ABORTS: u32 = 5;

/// Fencing errors: another producer with this transactional.id has taken over (or this one
/// may not use it). A replacement would fence the other in turn, so the service stops.
/// librdkafka reports a fenced producer with its own `__FENCED` code as well as the broker's.
const FENCING: [RDKafkaErrorCode; 5] = [
    RDKafkaErrorCode::Fenced,
    RDKafkaErrorCode::ProducerFenced,
    RDKafkaErrorCode::InvalidProducerEpoch,
    RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
    RDKafkaErrorCode::ClusterAuthorizationFailed,
];

fn fencing(code: RDKafkaErrorCode) -> bool {
    FENCING.contains(&code)
}

fn fenced(error: &KafkaError) -> bool {
    let code = match error {
        KafkaError::Transaction(error) => Some(error.code()),
        other => other.rdkafka_error_code(),
    };
    code.is_some_and(fencing)
}

/// The most of a commit's time kept for aborting if the commit fails.
const ABORT_RESERVE: Duration = Duration::from_secs(5);

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// How long one resumable abort call waits before delivery reports are served again.
const ABORT_SLICE: Duration = Duration::from_millis(100);

/// The exactly-once commit strategy. Its state is the transaction itself, which the write
/// path joins (every event and write is part of the open one), kept in [`Delivery`].
pub struct ExactlyOnce {
    drain_timeout: Duration,
}

impl ExactlyOnce {
    pub fn new(drain_timeout: Duration) -> ExactlyOnce {
        ExactlyOnce { drain_timeout }
    }

    /// Each turn of the loop: commits the open transaction once it is old or large enough.
    /// Returns where an abort rewound the consumer to (nothing if it committed).
    pub fn tick<C: ConsumerContext>(
        &mut self,
        delivery: &Delivery,
        consumer: &BaseConsumer<C>,
    ) -> Rewound {
        if !delivery.transaction_due() {
            return Rewound::new();
        }
        delivery
            .commit_transaction(consumer, self.drain_timeout)
            .rewound()
    }

    /// Commits the last transaction, then waits for the re-published consent states (written
    /// outside it). True if the stop is clean: an abort for a write left unsent at the stop
    /// is, since nothing is lost (its events are read again by the next owner); one
    /// re-publish lost is not (compaction could keep the stale record it overrides).
    pub fn shutdown<C: ConsumerContext>(
        self,
        delivery: &Delivery,
        consumer: &BaseConsumer<C>,
    ) -> bool {
        let committed = !matches!(
            delivery.commit_transaction(consumer, self.drain_timeout),
            Outcome::Aborted { .. }
        ) || delivery.not_sent_at_stop();
        let republished = delivery.drain(None, delivery.bounded(self.drain_timeout));
        committed && republished
    }
}

/// Before a consent revocation is applied: writes become visible on commit, so the open
/// transaction is committed first. An aborted one is fine too: its writes are never visible,
/// and its events are judged again with the revocation applied (where it rewound to is added
/// to `rewound`). False if delivery failed.
pub fn before_revocation<C: ConsumerContext>(
    delivery: &Delivery,
    consumer: &BaseConsumer<C>,
    drain_timeout: Duration,
    rewound: &mut Rewound,
) -> bool {
    rewound.extend(
        delivery
            .commit_transaction(consumer, drain_timeout)
            .rewound(),
    );
    delivery.failure().is_none()
}

/// Partitions are being revoked. The open transaction holds events of every owned partition:
/// it is committed whole, offsets of the revoked ones included. If that fails (a lost
/// assignment is fenced), the abort rewinds only the partitions kept.
pub fn on_revoke<C: ConsumerContext>(
    delivery: &Delivery,
    consumer: &BaseConsumer<C>,
    revoked: &[InputPartition],
    drain_timeout: Duration,
    rewound: &mut Rewound,
) {
    delivery.inputs.unassign(revoked);
    rewound.extend(
        delivery
            .commit_transaction(consumer, drain_timeout)
            .rewound(),
    );
    delivery.remove(revoked);
}

/// Where aborted transactions rewound the consumer to, per input partition: events read but
/// not judged are stale, and held events from those offsets on will be read again.
pub type Rewound = Vec<(InputPartition, i64)>;

/// What committing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No transaction was open.
    Idle,
    Committed,
    /// Aborted; the consumer was rewound to `rewound` (empty when the service stops on a
    /// failure), so events read but not judged must be dropped (they will be read again).
    Aborted {
        rewound: Rewound,
    },
}

impl Outcome {
    /// Where an abort rewound the consumer to; nothing otherwise.
    pub fn rewound(self) -> Rewound {
        match self {
            Outcome::Aborted { rewound } => rewound,
            Outcome::Idle | Outcome::Committed => Rewound::new(),
        }
    }
}

impl Delivery {
    /// Opens a transaction if none is open. Called for every event and every write.
    pub(super) fn ensure_transaction(&self) -> Result<(), KafkaError> {
        let mut txn = lock(&self.transaction);
        if txn.is_open() {
            return Ok(());
        }
        self.producer.load().begin_transaction()?;
        txn.opened(Instant::now());
        Ok(())
    }

    /// Notes an event of the open transaction.
    pub(super) fn transaction_event(&self, input: InputPartition, offset: i64) {
        lock(&self.transaction).event(input, offset);
    }

    /// Notes an acknowledged write, for the metrics at commit.
    pub(super) fn transaction_ack(&self, target: Target) {
        lock(&self.transaction).acknowledged(target);
    }

    /// Notes a failed write: the transaction can only be aborted. True for its first one.
    pub(super) fn transaction_failed(&self, error: KafkaError) -> bool {
        lock(&self.transaction).write_failed(error)
    }

    /// True if the open transaction is old or large enough to commit.
    pub fn transaction_due(&self) -> bool {
        lock(&self.transaction).due(self.transaction_max_events, self.transaction_interval)
    }

    /// Commits the open transaction with the offsets past every event judged in it. On an
    /// abortable error, aborts and rewinds; on a fatal one, records the failure (the service
    /// stops).
    pub fn commit_transaction<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        timeout: Duration,
    ) -> Outcome {
        if !lock(&self.transaction).is_open() {
            return Outcome::Idle;
        }
        // The whole call, commit and any abort, within `timeout` (or what is left of the
        // stop's deadline); a part is kept for the abort, so that the transaction is ended
        // either way and read_committed readers do not wait for the broker's timeout.
        let timeout = self.bounded(timeout);
        let deadline = Instant::now() + timeout;
        // At most ABORT_RESERVE, and a quarter of a short timeout: a fixed 5 s would leave
        // a 5 s stop nothing to commit with.
        let reserve = (timeout / 4).min(ABORT_RESERVE);
        let commit_by = deadline - reserve;
        if self.failure().is_some() {
            // The service is stopping on a failure: nothing more may commit. An abort now
            // spares read_committed consumers the wait for the transaction to time out; if
            // it fails, the next instance's `init_transactions` aborts the transaction.
            if let Err(error) = self.abort_serving_reports(left(deadline)) {
                tracing::debug!(%error, "abort at a failure failed");
            }
            return Outcome::Aborted {
                rewound: Rewound::new(),
            };
        }
        let started = Instant::now();
        let result = self.try_commit(consumer, commit_by, reserve);
        match result {
            Ok(()) => {
                lock(&self.transaction).committed(&self.metrics);
                self.transaction_seconds
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(telemetry::TRANSACTIONS, "result" => "committed").increment(1);
                Outcome::Committed
            }
            Err(error) => self.abort(consumer, left(deadline).max(ABORT_SLICE), error),
        }
    }

    fn try_commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        deadline: Instant,
        reserve: Duration,
    ) -> Result<(), KafkaError> {
        // Every write must be acknowledged before the offsets are computed. A write still
        // unacknowledged must not commit without its event's offset (a crash before the next
        // commit would write it twice): abort instead, and judge those events again.
        // Re-published consent states are written outside the transaction: not waited for.
        let drained = self.drain_writes(None, false, left(deadline), reserve);
        if let Some(error) = lock(&self.transaction).failure() {
            return Err(error);
        }
        if !drained {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        let offsets = lock(&self.progress).to_commit(None);
        if !offsets.is_empty() {
            let list = self.offset_list(&offsets)?;
            let group = consumer
                .group_metadata()
                .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::InvalidGroupId))?;
            self.producer
                .load()
                .send_offsets_to_transaction(&list, &group, left(deadline))?;
        }
        loop {
            let deadline = self.cut(deadline, reserve);
            match self
                .producer
                .load()
                .commit_transaction(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(()) => break,
                Err(KafkaError::Transaction(error))
                    if error.is_retriable() && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => return Err(error),
            }
        }
        let mut progress = lock(&self.progress);
        for (input, offset) in offsets {
            progress.mark_committed(input, offset);
        }
        Ok(())
    }

    fn abort<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        timeout: Duration,
        error: KafkaError,
    ) -> Outcome {
        metrics::counter!(telemetry::TRANSACTIONS, "result" => "aborted").increment(1);
        let aborts = lock(&self.transaction).aborting();
        if self.is_fenced(&error) || aborts > MAX_CONSECUTIVE_ABORTS {
            return self.give_up(error, aborts);
        }
        tracing::warn!(%error, "transaction aborted; judging its events again");
        let fatal = matches!(&error, KafkaError::Transaction(e) if e.is_fatal());
        let aborted = if fatal {
            Err(error)
        } else {
            self.abort_serving_reports(timeout)
        };
        match aborted {
            // The aborted writes' reports (purged or delivered-then-aborted) belong to this
            // transaction: settle them before its state is cleared.
            Ok(()) => self.settle(),
            Err(error) if self.is_fenced(&error) => return self.give_up(error, aborts),
            // Stopping: there is no time to replace the producer; the next instance's
            // init_transactions aborts the transaction.
            Err(error) if self.stopping() => return self.give_up(error, aborts),
            Err(error) => {
                events::ProducerRenewed { error: &error }.emit();
                if let Err(renew_error) = self.renew_producer(timeout) {
                    return self.give_up(renew_error, aborts);
                }
            }
        }
        let rewind = lock(&self.transaction).aborted();
        {
            let mut progress = lock(&self.progress);
            for (input, offset) in &rewind {
                progress.forget_from(*input, *offset);
            }
        }
        for (input, offset) in &rewind {
            if !self.inputs.is_assigned(*input) {
                continue;
            }
            let topic = self.inputs.topic_name(*input);
            let partition = i32::from(input.partition);
            if let Err(seek_error) = consumer.seek(
                topic,
                partition,
                Offset::Offset(*offset),
                self.bounded(timeout),
            ) {
                return self.give_up(seek_error, aborts);
            }
        }
        Outcome::Aborted { rewound: rewind }
    }

    /// Aborts the open transaction. librdkafka's abort first waits for the writes in flight,
    /// and their delivery reports count as in flight until the application polls them; unlike
    /// its commit, rust-rdkafka's `abort_transaction` does not poll. So the abort is called in
    /// short slices (librdkafka resumes a timed-out abort) with the reports served between.
    fn abort_serving_reports(&self, timeout: Duration) -> Result<(), KafkaError> {
        let until = Instant::now() + timeout;
        loop {
            let deadline = self.cut(until, Duration::ZERO);
            let slice = ABORT_SLICE.min(deadline.saturating_duration_since(Instant::now()));
            let producer = self.producer.load();
            match producer.abort_transaction(slice) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(error))
                    if error.is_retriable() && Instant::now() < deadline =>
                {
                    serve_queued(&producer);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Replaces a transactional producer that cannot abort: librdkafka makes some errors
    /// fatal that only the client's state makes so (librdkafka#4849: an abort whose partition
    /// registration never reached the coordinator, as across a broker restart, fails with
    /// INVALID_TXN_STATE). `init_transactions` of the new producer, with the same
    /// transactional.id, bumps the producer epoch: the coordinator aborts the old producer's
    /// open transaction and fences its writes still in flight, so nothing of it is ever read
    /// by `read_committed` consumers. Its reports are dropped with it; the caller rewinds.
    fn renew_producer(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = create_producer(&self.producer_config, Some(ProducerStats::register()))?;
        producer.init_transactions(timeout.max(self.startup_timeout))?;
        // Dropping the old producer purges its writes (rdkafka's `Drop` does, then serves
        // their reports into its own context, never settled: `settle` reads the new one's).
        drop(self.producer.swap(Arc::new(producer)));
        tracing::info!("transactional producer replaced");
        Ok(())
    }

    /// Whether `error`, or the fatal error behind it, says this producer is fenced.
    pub(super) fn is_fenced(&self, error: &KafkaError) -> bool {
        self.guarantee == Guarantee::ExactlyOnce
            && (fenced(error)
                || self
                    .producer
                    .load()
                    .client()
                    .fatal_error()
                    .is_some_and(|(code, _)| fencing(code)))
    }

    /// If `error` says this producer is fenced, why: another instance took its transactional
    /// id, or the broker aborted a transaction open too long (librdkafka reports both as
    /// fencing).
    pub(super) fn fencing(&self, error: &KafkaError) -> Option<events::Fencing> {
        if !self.is_fenced(error) {
            return None;
        }
        let open_for = lock(&self.transaction).open_for();
        Some(match open_for {
            Some(open) if open >= self.transaction_timeout => {
                events::Fencing::TransactionTimedOut { open }
            }
            _ => events::Fencing::AnotherInstance,
        })
    }

    fn give_up(&self, error: KafkaError, aborts: u32) -> Outcome {
        let mut failure = lock(&self.failure);
        if failure.is_none() {
            events::TransactionFailedForGood {
                error: &error,
                aborts,
                fencing: self.fencing(&error),
            }
            .emit();
            *failure = Some(DeliveryFailure::Transaction(error));
        }
        Outcome::Aborted {
            rewound: Rewound::new(),
        }
    }
}
