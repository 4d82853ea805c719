//! Keeps the consent table current: reads every partition of the consent topic from the
//! beginning at start, then follows it.
//!
//! It knows how far it has read, so the pipeline can ask two questions: has start-up read
//! every partition to its end (no event is judged on a partial table), and has the table
//! caught up with the end offsets sampled after a batch of events was read (an event is never
//! judged with consent older than what was acknowledged before the event was written).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::apply::{current_in, Applier};
use super::hidden::HiddenRecords;
use super::lookback::Lookback;
use super::read_progress::ReadProgress;
use super::republish::{Override, Republishing};
use super::sampler::Sampler;
pub use super::sampler::{EndOffsets, PendingSample};
use super::ConsentTable;
use crate::audit::{Auditor, View};
use crate::config::{Config, ConsentMode};
use crate::internal_events::{self as events, InternalEvent};
use crate::kafka::{consent_consumer_config, retry, KafkaContext, LagGauge};
use crate::privacy::PrivacyFollower;
use crate::telemetry::{self, ConsentMetrics};
use crate::vocabulary::Vocabulary;

/// What applying consent records asks of the rest of the service.
pub trait ConsentEffects {
    /// Called before a record that may take a grant away from a person is applied. Every
    /// write judged with the older state must be finished first, so that once the revocation
    /// is applied nothing judged before it can still be delivered. False if they could not
    /// be (the service is stopping or has failed): the record is then not applied, and
    /// nothing is judged any more.
    fn before_revocation(&mut self) -> bool;

    /// Called after a state is stored for `user` (a valid record, or a malformed one that left
    /// "nothing granted"): the user has a consent source now.
    fn applied(&mut self, user: &str);

    /// Writes the override of a stale record back to the consent topic, to `partition`,
    /// where the stale record is (compaction keeps the last record of a key per partition; a
    /// producer that does not partition like the enforcer's would otherwise put the override
    /// elsewhere).
    fn republish(&mut self, user: &str, partition: i32, record: Override);

    /// Whether this instance re-publishes for consent `partition`. Every instance of a
    /// global-mode group reads every consent partition and sees every stale record; one of
    /// them writes the override, so consent-topic writes do not multiply by the instance count.
    fn republishes_for(&self, partition: i32) -> bool;

    /// Changes whenever [`ConsentEffects::republishes_for`] may answer differently.
    fn ownership_version(&self) -> u64;

    /// Carries out a delete request of `user`: one deletion record to each destination's
    /// `deletion_topic` and a tombstone of the user's consent state, then, once they are all
    /// acknowledged (or committed), the request marked done to `deletion.partition` of the
    /// privacy topic. False if the writes could not be finished (stopping or failed).
    fn delete(&mut self, user: &str, deletion: &crate::privacy::Deletion) -> bool;
}

pub struct ConsentFollower {
    consumer: BaseConsumer<KafkaContext>,
    /// Asks for high watermarks (`read_uncommitted`: above an open transaction too).
    watermarks: BaseConsumer<KafkaContext>,
    sampler: Sampler,
    topic: String,
    timeout: Duration,
    /// Consent partitions followed now: all of them, or in co-partitioned mode those
    /// matching this instance's input partitions.
    assigned: Vec<i32>,
    applier: Applier,
    /// How far each partition is read and applied.
    progress: ReadProgress,
    /// Consent records held back behind open transactions, from the consumer's statistics.
    hidden: Arc<Mutex<HiddenRecords>>,
    /// A revocation could not be applied (the service is stopping or failed): the table is
    /// no longer current, and is never reported as caught up again.
    halted: bool,
    /// Co-partitioned mode found the consent topic's partition count changed (logged once).
    partitions_changed: bool,
    /// Following added partitions failed (logged once until it succeeds).
    follow_failing: bool,
    /// Loading found records behind an open transaction (logged once).
    hidden_at_start_reported: bool,
    /// When the history is next swept of states that ended before the window.
    next_sweep: Instant,
    /// The privacy-requests topic, when configured: followed beside the consent topic, with
    /// the same guarantees, into every table's suppressions.
    privacy: Option<PrivacyFollower>,
}

impl ConsentFollower {
    /// Starts following the consent topic: every partition from its beginning, or in
    /// co-partitioned mode none yet (see [`ConsentFollower::follow`]). Transient errors of the
    /// cluster are retried until `deadline`.
    pub fn start(
        config: &Config,
        partitions: usize,
        vocabulary: Arc<Vocabulary>,
        metrics: ConsentMetrics,
        deadline: Instant,
    ) -> KafkaResult<ConsentFollower> {
        let hidden = Arc::new(Mutex::new(HiddenRecords::default()));
        let consumer: BaseConsumer<KafkaContext> = consent_consumer_config(config)
            .create_with_context(
                KafkaContext::new(Some(LagGauge::Total(metrics.lag.clone())))
                    .with_hidden(hidden.clone()),
            )?;
        let watermarks: BaseConsumer<KafkaContext> = unpolled_client_config(config)
            .set("isolation.level", "read_uncommitted")
            .create_with_context(KafkaContext::new(None))?;
        let sampler = Sampler::start(
            unpolled_client_config(config).create_with_context(KafkaContext::new(None))?,
            config.consent.topic.clone(),
        )
        .map_err(|error| {
            tracing::error!(%error, "cannot start the consent sampling thread");
            KafkaError::ClientCreation(format!("consent sampling thread: {error}"))
        })?;
        // Without it overrides are re-encoded states: correct, without the records' own fields.
        let lookback = unpolled_client_config(config)
            .create_with_context(KafkaContext::new(None))
            .map_err(|error| error.to_string())
            .and_then(|client| {
                Lookback::start(
                    client,
                    config.consent.topic.clone(),
                    vocabulary.clone(),
                    config.consent.format,
                )
                    .map_err(|error| error.to_string())
            })
            .inspect_err(|error| {
                tracing::warn!(%error, "cannot start reading consent records back; overrides of stale records will not carry their fields");
            })
            .ok();
        let copartitioned = config.consent.mode == ConsentMode::Copartitioned;
        let history_window_ms = config.consent.history_window.as_millis();
        let history_max_changes = config.consent.history_max_changes;
        let tables = (0..if copartitioned { partitions } else { 1 })
            .map(|_| ConsentTable::new(history_window_ms, history_max_changes))
            .collect();
        let mut privacy = config
            .privacy
            .as_ref()
            .map(|privacy| PrivacyFollower::start(config, privacy, deadline))
            .transpose()?;
        let audit = Auditor::start(
            config,
            vocabulary.clone(),
            i32::try_from(partitions).unwrap_or(i32::MAX),
            privacy.as_ref().map_or(0, PrivacyFollower::partitions),
            deadline,
        )?;
        if let Some(privacy) = &mut privacy {
            privacy.audit = audit.clone();
        }
        let mut follower = ConsentFollower {
            consumer,
            watermarks,
            sampler,
            topic: config.consent.topic.clone(),
            timeout: config.kafka.startup_timeout().value,
            assigned: Vec::new(),
            applier: Applier {
                tables,
                history_window_ms,
                history_max_changes,
                copartitioned,
                format: config.consent.format,
                widest: ConsentTable::widest(config, &vocabulary),
                vocabulary,
                republishing: Republishing::new(
                    lookback,
                    metrics::counter!(telemetry::CONSENT_RECORDS_REPUBLISHED_REWRITTEN),
                ),
                metrics,
                audit,
            },
            progress: ReadProgress::default(),
            hidden,
            halted: false,
            partitions_changed: false,
            follow_failing: false,
            hidden_at_start_reported: false,
            next_sweep: Instant::now() + sweep_interval(config.consent.history_window.as_millis()),
            privacy,
        };
        if !copartitioned {
            let all: Vec<i32> = (0..i32::try_from(partitions).unwrap_or(i32::MAX)).collect();
            follower.follow_by(&all, deadline)?;
        }
        Ok(follower)
    }

    /// Follows exactly `partitions` from now on: new ones are read from their beginning (and
    /// count as behind until read to the end they have now), dropped ones are forgotten.
    /// Transient errors of the cluster are retried for `kafka.startup_timeout_secs`.
    pub fn follow(&mut self, partitions: &[i32]) -> KafkaResult<()> {
        self.follow_by(partitions, Instant::now() + self.timeout)
    }

    fn follow_by(&mut self, partitions: &[i32], deadline: Instant) -> KafkaResult<()> {
        let added: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !self.assigned.contains(p))
            .collect();
        let dropped: Vec<i32> = self
            .assigned
            .iter()
            .copied()
            .filter(|p| !partitions.contains(p))
            .collect();
        if added.is_empty() && dropped.is_empty() {
            return Ok(());
        }
        if !dropped.is_empty() {
            let mut list = TopicPartitionList::new();
            for partition in &dropped {
                list.add_partition(&self.topic, *partition);
                self.progress.forget(*partition);
                self.applier.forget_partition(*partition);
                if let Ok(mut hidden) = self.hidden.lock() {
                    hidden.forget(*partition);
                }
            }
            self.consumer.incremental_unassign(&list)?;
        }
        if !added.is_empty() {
            let mut list = TopicPartitionList::new();
            for partition in &added {
                list.add_partition_offset(&self.topic, *partition, Offset::Beginning)?;
                // A partition just created can answer "not leader" for a moment.
                // The high watermark, not the last stable offset a read_committed client is
                // told: records behind a transaction left open count as written (loading
                // waits for them, see `end_reached`).
                let (low, high) = retry(deadline, "reading the consent topic's offsets", |left| {
                    self.watermarks
                        .fetch_watermarks(&self.topic, *partition, left)
                })?;
                self.progress.follow(*partition, low, high);
            }
            self.consumer.incremental_assign(&list)?;
        }
        self.assigned = partitions.to_vec();
        self.assigned.sort_unstable();
        tracing::info!(
            added = added.len(),
            dropped = dropped.len(),
            "consent partitions followed"
        );
        Ok(())
    }

    /// The table to judge an event of (input or consent) partition `partition` with.
    pub fn table_for(&self, partition: i32) -> &ConsentTable {
        self.applier.table_of(partition)
    }

    /// How long acknowledged consent records may have been invisible behind a transaction
    /// left open on a consent partition (see [`HiddenRecords`]).
    pub fn hidden_for(&self) -> Duration {
        self.hidden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .hidden_for(Instant::now())
    }

    /// Forgets, every [`sweep_interval`], the superseded states that ended before the
    /// history window, so users who never change again do not keep them for good.
    fn sweep_if_due(&mut self) {
        let started = Instant::now();
        if started < self.next_sweep {
            return;
        }
        let applier = &mut self.applier;
        let now_ms = crate::clock::now_ms();
        let forgotten: usize = applier.tables.iter_mut().map(|t| t.sweep(now_ms)).sum();
        tracing::debug!(
            forgotten,
            took_ms = started.elapsed().as_millis() as u64,
            "consent history swept"
        );
        self.next_sweep = started + sweep_interval(applier.history_window_ms);
    }

    /// Users in the tables.
    pub fn states(&self) -> usize {
        self.applier.tables.iter().map(ConsentTable::len).sum()
    }

    /// Whether the privacy topic is followed too (`[privacy]`).
    pub fn follows_privacy(&self) -> bool {
        self.privacy.is_some()
    }

    /// True once every partition has been read up to the end it had at start (the privacy
    /// topic's too).
    pub fn loaded(&self) -> bool {
        self.progress.loaded() && self.privacy.as_ref().is_none_or(PrivacyFollower::loaded)
    }

    /// Asks for the followed consent partitions' end offsets as they are from now on: the
    /// request goes out on the sampling thread after this call, while the caller goes on.
    pub fn request_sample(&self, timeout: Duration) -> PendingSample {
        let consent = if self.assigned.is_empty() {
            PendingSample::taken(EndOffsets::default())
        } else {
            let from_new = (!self.applier.copartitioned).then(|| self.followed_count());
            self.sampler
                .request(self.assigned.clone(), from_new, timeout)
        };
        match &self.privacy {
            Some(privacy) => consent.with_privacy(privacy.request_sample(timeout)),
            None => consent,
        }
    }

    /// True if every record before `ends` is applied, in the partitions still followed (no
    /// event of a partition no longer followed is judged here any more).
    /// Also every record before the stable offsets the consent consumer's statistics last
    /// showed (see [`HiddenRecords`]): the first news of records a transaction held back.
    pub fn reached(&mut self, ends: &EndOffsets) -> bool {
        if self.halted || !self.follow_added(ends) {
            return false;
        }
        if let Some(privacy) = &mut self.privacy {
            // A sample without the privacy topic's ends says nothing of it: not reached.
            if !ends
                .privacy
                .as_deref()
                .is_some_and(|ends| privacy.reached(ends))
            {
                return false;
            }
        }
        if self.applied_through(ends) && self.applied_through_visible() {
            return true;
        }
        self.progress.catch_up_with(&self.consumer);
        self.applied_through(ends) && self.applied_through_visible()
    }

    fn applied_through_visible(&self) -> bool {
        let hidden = self
            .hidden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reached = hidden
            .visible_ends()
            .all(|(p, end)| !self.assigned.contains(&p) || self.progress.applied_through(p, end));
        reached
    }

    /// At the end of what a `read_committed` reader can read of a partition still being
    /// loaded: true unless records written before start sit above the last stable offset,
    /// behind a transaction left open (then loading waits for it to end: no event is judged
    /// before the topic is read to the end it had at start).
    fn end_reached(&mut self, partition: i32) -> bool {
        let Some(end) = self.progress.start_end(partition) else {
            return true;
        };
        let mut query = TopicPartitionList::new();
        if query
            .add_partition_offset(&self.topic, partition, Offset::End)
            .is_err()
        {
            return true;
        }
        let stable = self
            .consumer
            .offsets_for_times(query, self.timeout)
            .ok()
            .and_then(|answer| answer.elements().first().map(|e| e.offset()));
        match stable {
            Some(Offset::Offset(stable)) if stable < end => {
                if !self.hidden_at_start_reported {
                    self.hidden_at_start_reported = true;
                    tracing::warn!(
                        partition,
                        "consent records are held back behind a transaction left open on the consent topic: loading waits for it to end"
                    );
                }
                false
            }
            // Asking failed: the end of the partition is taken as reached, as it always was.
            _ => true,
        }
    }

    /// Partitions followed in global mode: all of them, numbered from 0.
    fn followed_count(&self) -> i32 {
        self.assigned.last().map_or(0, |last| last + 1)
    }

    /// Follows consent partitions added since start (global mode), so that their records
    /// are applied and waited for. In co-partitioned mode a consent topic whose partition
    /// count changed no longer matches the input topics: nothing is judged (false) until a
    /// restart checks the topics again.
    fn follow_added(&mut self, ends: &EndOffsets) -> bool {
        let Some(count) = ends.partition_count else {
            return true;
        };
        if self.applier.copartitioned {
            if count == self.applier.tables.len() {
                return true;
            }
            if !self.partitions_changed {
                self.partitions_changed = true;
                events::ConsentPartitionCountChanged {
                    partitions: count,
                    expected: self.applier.tables.len(),
                }
                .emit();
            }
            return false;
        }
        let followed = usize::try_from(self.followed_count()).unwrap_or(0);
        if count <= followed {
            return true;
        }
        let all: Vec<i32> = (0..i32::try_from(count).unwrap_or(i32::MAX)).collect();
        // This client's metadata may not know the new partitions yet (librdkafka refreshes
        // it every few minutes): ask for it first.
        let followed = self
            .consumer
            .fetch_metadata(Some(&self.topic), self.timeout)
            .and_then(|_| {
                self.watermarks
                    .fetch_metadata(Some(&self.topic), self.timeout)
            })
            .and_then(|_| self.follow(&all));
        match followed {
            Ok(()) => {
                self.follow_failing = false;
                tracing::info!(
                    partitions = count,
                    "following consent partitions added since start"
                );
                true
            }
            Err(error) => {
                events::AddedConsentPartitionsNotFollowed {
                    error: &error,
                    first_of_a_run: !self.follow_failing,
                }
                .emit();
                self.follow_failing = true;
                false
            }
        }
    }

    fn applied_through(&self, ends: &EndOffsets) -> bool {
        ends.ends
            .iter()
            .all(|(p, end)| !self.assigned.contains(p) || self.progress.applied_through(*p, *end))
    }

    /// Applies the records that arrive within `timeout`, at most `budget` of them, then, once
    /// loaded, re-publishes the newer states that stale records call for. Returns how many
    /// records were read.
    pub fn poll(
        &mut self,
        timeout: Duration,
        budget: usize,
        effects: &mut dyn ConsentEffects,
    ) -> usize {
        let mut read = 0;
        let mut wait = timeout;
        let now_ms = crate::clock::now_ms();
        // The audit log is behind: nothing more is applied until it catches up.
        let audit_full = self
            .applier
            .audit
            .as_ref()
            .is_some_and(|audit| !audit.has_room());
        if audit_full {
            std::thread::sleep(timeout.min(Duration::from_millis(10)));
        }
        while read < budget && !self.halted && !audit_full {
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    read += 1;
                    if !self.applier.apply(&message, now_ms, effects) {
                        tracing::warn!(
                            "a consent change that may revoke a grant was not applied: judging stops"
                        );
                        self.halted = true;
                        break;
                    }
                    self.progress
                        .applied(message.partition(), message.offset() + 1);
                    if let Some(audit) = &self.applier.audit {
                        audit.advance(View::Consent, message.partition(), message.offset() + 1);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    if self.progress.is_behind(partition) && self.end_reached(partition) {
                        self.progress.end_reached(partition);
                    }
                }
                Some(Err(error)) => {
                    events::ConsentReadFailed { error: &error }.emit();
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        if let (Some(privacy), false) = (&mut self.privacy, audit_full) {
            read += privacy.poll(&mut self.applier.tables, Duration::ZERO, budget, effects);
        }
        self.sweep_if_due();
        let states = self.states();
        let applier = &mut self.applier;
        applier.metrics.states.set(states as f64);
        let history_users: usize = applier
            .tables
            .iter()
            .map(ConsentTable::users_with_history)
            .sum();
        applier.metrics.history_users.set(history_users as f64);
        if self.progress.loaded() {
            let current = current_in(&applier.tables, applier.copartitioned);
            applier.republishing.run(&current, effects);
            if let Some(privacy) = &mut self.privacy {
                if !privacy.run_deletions(effects) {
                    tracing::warn!("a delete request could not be carried out: judging stops");
                    self.halted = true;
                }
            }
        }
        read
    }

    /// Writes what the audit log has queued, until `deadline` at most. True if all of it
    /// was written (or there is no audit log).
    pub fn close_audit(&self, deadline: Instant) -> bool {
        self.applier
            .audit
            .as_ref()
            .is_none_or(|audit| audit.close(deadline))
    }

    /// Writes the overrides still waiting for a copy of their record from the table's state,
    /// so that the stop's drain covers them.
    pub fn flush_overrides(&mut self, effects: &mut dyn ConsentEffects) {
        let applier = &mut self.applier;
        let current = current_in(&applier.tables, applier.copartitioned);
        applier.republishing.flush(&current, effects);
    }
}

/// How often the history is swept: every quarter of the window, at least every hour and at
/// most every second (so a state is kept no longer than the window and a quarter of it, or
/// an hour, after it ended).
fn sweep_interval(history_window_ms: i64) -> Duration {
    let quarter = u64::try_from(history_window_ms / 4).unwrap_or(0);
    Duration::from_millis(quarter.clamp(1_000, 3_600_000))
}

/// The consent clients that ask the cluster but are not polled, or rarely: no statistics,
/// which librdkafka would queue every interval for a poll that does not come.
fn unpolled_client_config(config: &Config) -> rdkafka::ClientConfig {
    let mut client = consent_consumer_config(config);
    client.set("statistics.interval.ms", "0");
    client
}
