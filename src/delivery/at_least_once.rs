//! At-least-once delivery: an input offset is committed to the consumer group only once every
//! write of every event before it is acknowledged. A crash between the acknowledgement and
//! the commit writes those events again; nothing is ever committed past an unacknowledged
//! write.
//!
//! Where offsets are committed, in this mode:
//! - [`AtLeastOnce::tick`], each turn of the loop: one asynchronous commit at a time, every
//!   `delivery.commit_interval`, never while the consent table is stale;
//! - [`on_revoke`], when partitions are revoked: their writes are drained and their offsets
//!   committed before they are released;
//! - [`AtLeastOnce::shutdown`], at the stop: drain, last commit, within the stop's deadline.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::TopicPartitionList;

use super::{lock, Delivery};
use crate::input::InputPartition;
use crate::internal_events::{self as events, InternalEvent};
use crate::kafka::commit::{self, CommitAnswer, PendingCommit};
use crate::telemetry;

/// At most this much of a stop's deadline is kept for the last commit and for leaving the
/// group (a quarter of it, if that is less).
const STOP_RESERVE: Duration = Duration::from_secs(5);

/// The part of a stop's deadline that drains leave to the commit and the close.
pub(crate) fn stop_reserve(drain_timeout: Duration) -> Duration {
    (drain_timeout / 4).min(STOP_RESERVE)
}

/// The periodic commit's state.
pub struct AtLeastOnce<'c> {
    interval: Duration,
    last_commit: Instant,
    /// The commit sent and not answered yet (dropped before the consumer).
    pending: Option<PendingCommit<'c>>,
}

impl<'c> AtLeastOnce<'c> {
    pub fn new(interval: Duration) -> AtLeastOnce<'c> {
        AtLeastOnce {
            interval,
            last_commit: Instant::now(),
            pending: None,
        }
    }

    /// Reads the answer of the commit in flight, and sends the next one when it is due. Not
    /// while the consent table is `stale`: nothing is judged then, and the offsets to commit
    /// have not moved.
    pub fn tick<C: ConsumerContext>(
        &mut self,
        delivery: &Delivery,
        consumer: &'c BaseConsumer<C>,
        stale: bool,
    ) {
        if let Some(answer) = self.pending.as_ref().and_then(|p| p.answer(Duration::ZERO)) {
            delivery.commit_answered(&answer);
            self.pending = None;
            if !answer.committed() {
                events::CommitRejected {
                    result: &answer.result,
                }
                .emit();
            }
        }
        // One commit at a time: the next one is sent once this one is answered.
        if self.pending.is_none() && !stale && self.last_commit.elapsed() >= self.interval {
            match delivery.commit_async(consumer) {
                Ok(pending) => self.pending = pending,
                Err(error) => {
                    events::CommitNotSent { error: &error }.emit();
                }
            }
            self.last_commit = Instant::now();
        }
    }

    /// Drains every write and commits what was acknowledged. Draining, the last commit and
    /// leaving the group share the stop's deadline: the commit and the close keep a reserve,
    /// so that they are tried even after a drain that ran out of time (what was acknowledged
    /// is still committed). True if every write was acknowledged.
    pub fn shutdown<C: ConsumerContext>(
        self,
        delivery: &Delivery,
        consumer: &BaseConsumer<C>,
        drain_timeout: Duration,
    ) -> bool {
        // Its answer no longer matters: the last commit covers it.
        drop(self.pending);
        let reserve = stop_reserve(drain_timeout);
        let drained = delivery.drain(
            None,
            delivery.bounded(drain_timeout).saturating_sub(reserve),
        );
        let commit_for = delivery.bounded(drain_timeout).saturating_sub(reserve / 2);
        if let Err(error) = delivery.commit_within(consumer, None, commit_for) {
            events::FinalCommitFailed { error: &error }.emit();
        }
        drained
    }
}

/// Before a consent revocation is applied: waits as long as it takes for every event write
/// judged before it (applying the revocation while they may still land would break the
/// guarantee). Acknowledgements are served meanwhile; a stop or a failed write ends the wait
/// (false). Only event writes: a re-published consent state is no judged event.
pub fn before_revocation(delivery: &Delivery, drain_timeout: Duration) -> bool {
    loop {
        if delivery.drain_events(drain_timeout) {
            return true;
        }
        if delivery.failure().is_some() || delivery.stopping() {
            return false;
        }
        events::RevocationWaitsForWrites { drain_timeout }.emit();
    }
}

/// Partitions are being revoked: their writes are drained and their offsets committed before
/// they are released, so the next owner starts where this instance's acknowledged work ends.
pub fn on_revoke<C: ConsumerContext>(
    delivery: &Delivery,
    consumer: &BaseConsumer<C>,
    revoked: &[InputPartition],
    drain_timeout: Duration,
) {
    // One deadline for the drain and the commit: the drain timeout, or what is left of the
    // stop's deadline, less (when stopping) the reserve that the commit and the leave need.
    let until = Instant::now() + delivery.bounded(drain_timeout);
    let reserve = if delivery.stopping() {
        stop_reserve(drain_timeout)
    } else {
        Duration::ZERO
    };
    let left = || until.saturating_duration_since(Instant::now());
    let drained = delivery.drain(Some(revoked), left().saturating_sub(reserve));
    let timeout = left().saturating_sub(reserve / 2);
    if consumer.assignment_lost() {
        tracing::warn!("assignment lost: the group moved on, not committing");
    } else if let Err(error) = delivery.commit_within(consumer, Some(revoked), timeout) {
        events::RevocationCommitFailed { error: &error }.emit();
    }
    if !drained {
        events::RevokedPartitionsNotDrained.emit();
    }
    delivery.remove(revoked);
}

impl Delivery {
    /// The committable offsets (of the given partitions, or all) not committed yet, as a list
    /// for the consumer; None if there are none.
    pub(super) fn to_commit(
        &self,
        only: Option<&[InputPartition]>,
    ) -> KafkaResult<Option<TopicPartitionList>> {
        let offsets = lock(&self.progress).to_commit(only);
        if offsets.is_empty() {
            return Ok(None);
        }
        self.offset_list(&offsets).map(Some)
    }

    /// Sends a commit of what is committable, without waiting: the caller reads its answer
    /// and hands it to [`Delivery::commit_answered`]. None if there is nothing to commit.
    pub fn commit_async<'c, C: ConsumerContext>(
        &self,
        consumer: &'c BaseConsumer<C>,
    ) -> KafkaResult<Option<PendingCommit<'c>>> {
        match self.to_commit(None)? {
            Some(list) => PendingCommit::send(consumer, &list).map(Some),
            None => Ok(None),
        }
    }

    /// Commits what is committable (of the given partitions, or all) and waits at most
    /// `timeout` for the broker's answer. An error if it was rejected or not answered in
    /// time (the partitions are committed again next time).
    pub fn commit_within<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        only: Option<&[InputPartition]>,
        timeout: Duration,
    ) -> KafkaResult<()> {
        let Some(list) = self.to_commit(only)? else {
            return Ok(());
        };
        match commit::commit_within(consumer, &list, timeout)? {
            Some(answer) => {
                self.commit_answered(&answer);
                match answer.result {
                    Err(error) => Err(error),
                    Ok(()) => match answer.offsets.iter().find_map(|o| o.error) {
                        Some(code) => Err(KafkaError::ConsumerCommit(code)),
                        None => Ok(()),
                    },
                }
            }
            None => {
                metrics::counter!(telemetry::OFFSET_COMMITS, "result" => "error").increment(1);
                Err(KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::OperationTimedOut,
                ))
            }
        }
    }

    /// The broker's answer to a commit: partitions committed are recorded; the others are
    /// committed again next time.
    pub fn commit_answered(&self, answer: &CommitAnswer) {
        let mut progress = lock(&self.progress);
        let mut failed = answer.result.is_err();
        for committed in &answer.offsets {
            let Some(input) = self
                .inputs
                .input_partition(&committed.topic, committed.partition)
            else {
                continue;
            };
            if answer.result.is_ok() && committed.error.is_none() && committed.offset >= 0 {
                progress.mark_committed(input, committed.offset);
            } else {
                failed = true;
                progress.forget_commit(input);
            }
        }
        let outcome = if failed { "error" } else { "ok" };
        metrics::counter!(telemetry::OFFSET_COMMITS, "result" => outcome).increment(1);
    }
}
