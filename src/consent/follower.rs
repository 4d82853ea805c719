//! Keeps the consent table current: reads every partition of the consent topic from the
//! beginning at start, then follows it.
//!
//! It knows how far it has read, so the pipeline can ask two questions: has start-up read
//! every partition to its end (no event is judged on a partial table), and has the table
//! caught up with the end offsets sampled after a batch of events was read (an event is never
//! judged with consent older than what was acknowledged before the event was written).

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::hidden::HiddenRecords;
use super::lookback::Lookback;
use super::record::{parse_key, parse_value};
use super::republish::{Override, Republishing, REPUBLISHED_HEADER};
use super::table::RecordOutcome;
use super::{ConsentState, ConsentTable, ConsentUpdate, Rejection};
use crate::config::{Config, ConsentMode};
use crate::kafka::{consent_consumer_config, retry, KafkaContext, LagGauge};
use crate::telemetry::{self, ConsentMetrics};
use crate::vocabulary::{CategorySet, Vocabulary};

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
}

/// End offsets of the consent partitions at one moment, and how many partitions the topic
/// had then (`None` when not asked).
#[derive(Debug, Clone, Default)]
pub struct EndOffsets {
    ends: Vec<(i32, i64)>,
    partition_count: Option<usize>,
}

/// An end-offset sample asked for (see [`ConsentFollower::request_sample`]): the request is
/// sent after the ask, on the sampling thread.
pub struct PendingSample {
    state: SampleState,
}

enum SampleState {
    Waiting(mpsc::Receiver<KafkaResult<EndOffsets>>),
    Taken(EndOffsets),
}

impl PendingSample {
    fn taken(ends: EndOffsets) -> PendingSample {
        PendingSample {
            state: SampleState::Taken(ends),
        }
    }

    /// The sampled end offsets once the answer is in, waiting at most `timeout` for it;
    /// `Ok(None)` if it is not in yet. After an error the sample is spent: ask for a new one.
    pub fn wait(&mut self, timeout: Duration) -> KafkaResult<Option<&EndOffsets>> {
        if let SampleState::Waiting(answer) = &self.state {
            let ends = match answer.recv_timeout(timeout) {
                Ok(result) => result?,
                Err(mpsc::RecvTimeoutError::Timeout) => return Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(KafkaError::Canceled);
                }
            };
            self.state = SampleState::Taken(ends);
        }
        match &self.state {
            SampleState::Taken(ends) => Ok(Some(ends)),
            SampleState::Waiting(_) => Ok(None),
        }
    }
}

/// One sample to take: which partitions, how long to wait for the cluster, where to answer.
struct SampleRequest {
    partitions: Vec<i32>,
    /// Also sample every partition from this one on that the topic has now (partitions added
    /// since the follower last looked); `None` in co-partitioned mode.
    from_new: Option<i32>,
    timeout: Duration,
    answer: mpsc::SyncSender<KafkaResult<EndOffsets>>,
}

/// Takes end-offset samples on a thread of its own, with a client of its own: on the
/// follower's connection a request would queue behind its long-polling fetch (up to
/// `fetch.wait.max.ms`), and on the pipeline thread the round trip for one batch could not
/// overlap with judging the batch before it.
struct Sampler {
    requests: Option<mpsc::Sender<SampleRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    fn start(client: BaseConsumer<KafkaContext>, topic: String) -> std::io::Result<Sampler> {
        let (requests, incoming) = mpsc::channel::<SampleRequest>();
        let thread = std::thread::Builder::new()
            .name("consent-sampler".to_owned())
            .spawn(move || {
                while let Ok(first) = incoming.recv() {
                    // One sample answers every ask made before it is sent: under load the asks
                    // can come faster than round trips, and answering them one by one would
                    // queue each behind all the others.
                    let mut asks = vec![first];
                    asks.extend(incoming.try_iter());
                    let mut partitions: Vec<i32> = asks
                        .iter()
                        .flat_map(|ask| ask.partitions.iter().copied())
                        .collect();
                    partitions.sort_unstable();
                    partitions.dedup();
                    let from_new = asks.iter().filter_map(|ask| ask.from_new).min();
                    let timeout = asks.iter().map(|ask| ask.timeout).min().unwrap_or_default();
                    let ends = sample_ends(&client, &topic, &partitions, from_new, timeout);
                    for ask in asks {
                        // The asker may have moved on (a rewind dropped its batch).
                        let _ = ask.answer.send(ends.clone());
                    }
                }
            })?;
        Ok(Sampler {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    fn request(
        &self,
        partitions: Vec<i32>,
        from_new: Option<i32>,
        timeout: Duration,
    ) -> PendingSample {
        let (answer, receiver) = mpsc::sync_channel(1);
        let request = SampleRequest {
            partitions,
            from_new,
            timeout,
            answer,
        };
        // If the thread is gone the receiver reports it as disconnected.
        if let Some(requests) = &self.requests {
            let _ = requests.send(request);
        }
        PendingSample {
            state: SampleState::Waiting(receiver),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the sample it is taking, if any.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asks the cluster for the topic's partition count now, then for the end offsets of
/// `partitions` and of any partition from `from_new` on (for `read_committed`, the last
/// stable offsets). The count comes first: a partition added before the sample was asked
/// for is in it, so a consent record written there is waited for like any other.
fn sample_ends(
    client: &BaseConsumer<KafkaContext>,
    topic: &str,
    partitions: &[i32],
    from_new: Option<i32>,
    timeout: Duration,
) -> KafkaResult<EndOffsets> {
    let partition_count = client
        .fetch_metadata(Some(topic), timeout)?
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len());
    let added = match (from_new, partition_count) {
        (Some(from), Some(count)) => from..i32::try_from(count).unwrap_or(i32::MAX),
        _ => 0..0,
    };
    let mut query = TopicPartitionList::with_capacity(partitions.len() + added.len());
    for partition in partitions
        .iter()
        .copied()
        .chain(added.filter(|p| !partitions.contains(p)))
    {
        query.add_partition_offset(topic, partition, Offset::End)?;
    }
    let answer = client.offsets_for_times(query, timeout)?;
    let mut ends = Vec::with_capacity(partitions.len());
    for element in answer.elements() {
        if let Some(error) = element.error().err() {
            return Err(error);
        }
        match element.offset() {
            Offset::Offset(end) => ends.push((element.partition(), end)),
            other => {
                tracing::debug!(?other, "no end offset for a consent partition");
                return Err(KafkaError::OffsetFetch(
                    rdkafka::types::RDKafkaErrorCode::OffsetNotAvailable,
                ));
            }
        }
    }
    Ok(EndOffsets {
        ends,
        partition_count,
    })
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
    /// Partitions not yet read to the end they had at start.
    behind: HashSet<i32>,
    /// The end offset each partition had at start.
    start_ends: HashMap<i32, i64>,
    /// How far each partition is known to be applied: every record before it is in the table.
    applied_to: HashMap<i32, i64>,
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
}

/// Applies records to the table (apart from the consumer, so a borrowed message can be
/// applied while the consumer is borrowed).
struct Applier {
    /// One table for the whole topic, or in co-partitioned mode one per consent partition
    /// (empty unless followed).
    tables: Vec<ConsentTable>,
    history_window_ms: i64,
    history_max_changes: usize,
    vocabulary: Arc<Vocabulary>,
    /// Every category the configuration knows: a state granting all of them narrows nobody.
    all_categories: CategorySet,
    copartitioned: bool,
    /// Stale records to override.
    republishing: Republishing,
    metrics: ConsentMetrics,
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
                Lookback::start(client, config.consent.topic.clone(), vocabulary.clone())
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
        let mut follower = ConsentFollower {
            consumer,
            watermarks,
            sampler,
            topic: config.consent.topic.clone(),
            timeout: Duration::from_secs(config.kafka.startup_timeout_secs),
            assigned: Vec::new(),
            applier: Applier {
                tables,
                history_window_ms,
                history_max_changes,
                copartitioned,
                all_categories: vocabulary.all_categories(),
                vocabulary,
                republishing: Republishing::new(
                    lookback,
                    metrics::counter!(telemetry::CONSENT_RECORDS_REPUBLISHED_REWRITTEN),
                ),
                metrics,
            },
            behind: HashSet::new(),
            start_ends: HashMap::new(),
            applied_to: HashMap::new(),
            hidden,
            halted: false,
            partitions_changed: false,
            follow_failing: false,
            hidden_at_start_reported: false,
            next_sweep: Instant::now() + sweep_interval(config.consent.history_window.as_millis()),
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
                self.behind.remove(partition);
                self.start_ends.remove(partition);
                self.applied_to.remove(partition);
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
                if high > low {
                    self.behind.insert(*partition);
                }
                self.start_ends.insert(*partition, high);
                // Nothing before the log start is left to read.
                self.applied_to.insert(*partition, low);
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

    /// True once every partition has been read up to the end it had at start.
    pub fn loaded(&self) -> bool {
        self.behind.is_empty()
    }

    /// Asks for the followed consent partitions' end offsets as they are from now on: the
    /// request goes out on the sampling thread after this call, while the caller goes on.
    pub fn request_sample(&self, timeout: Duration) -> PendingSample {
        if self.assigned.is_empty() {
            return PendingSample::taken(EndOffsets::default());
        }
        let from_new = (!self.applier.copartitioned).then(|| self.followed_count());
        self.sampler
            .request(self.assigned.clone(), from_new, timeout)
    }

    /// True if every record before `ends` is applied, in the partitions still followed (no
    /// event of a partition no longer followed is judged here any more).
    /// Also every record before the stable offsets the consent consumer's statistics last
    /// showed (see [`HiddenRecords`]): the first news of records a transaction held back.
    pub fn reached(&mut self, ends: &EndOffsets) -> bool {
        if self.halted || !self.follow_added(ends) {
            return false;
        }
        if self.applied_through(ends) && self.applied_through_visible() {
            return true;
        }
        // Transaction markers and aborted records advance the position without a message.
        if let Ok(positions) = self.consumer.position() {
            for element in positions.elements() {
                if let Offset::Offset(position) = element.offset() {
                    let applied = self
                        .applied_to
                        .entry(element.partition())
                        .or_insert(position);
                    *applied = (*applied).max(position);
                }
            }
        }
        self.applied_through(ends) && self.applied_through_visible()
    }

    fn applied_through_visible(&self) -> bool {
        let hidden = self
            .hidden
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reached = hidden.visible_ends().all(|(p, end)| {
            !self.assigned.contains(&p) || self.applied_to.get(&p).is_some_and(|a| *a >= end)
        });
        reached
    }

    /// At the end of what a `read_committed` reader can read of a partition still being
    /// loaded: true unless records written before start sit above the last stable offset,
    /// behind a transaction left open (then loading waits for it to end: no event is judged
    /// before the topic is read to the end it had at start).
    fn end_reached(&mut self, partition: i32) -> bool {
        let Some(end) = self.start_ends.get(&partition).copied() else {
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
                telemetry::error("consent", "partitions_changed");
                tracing::error!(
                    partitions = count,
                    expected = self.applier.tables.len(),
                    "the consent topic's partition count changed: co-partitioned mode no longer matches the input topics; not judging events until restarted"
                );
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
                telemetry::error("consent", "follow");
                if !self.follow_failing {
                    self.follow_failing = true;
                    tracing::warn!(%error, "cannot follow consent partitions added since start; not judging events until it can");
                }
                false
            }
        }
    }

    fn applied_through(&self, ends: &EndOffsets) -> bool {
        ends.ends.iter().all(|(p, end)| {
            !self.assigned.contains(p) || self.applied_to.get(p).is_some_and(|a| a >= end)
        })
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
        while read < budget && !self.halted {
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
                    let partition = message.partition();
                    let next = message.offset() + 1;
                    let applied = self.applied_to.entry(partition).or_insert(next);
                    *applied = (*applied).max(next);
                    if self
                        .start_ends
                        .get(&partition)
                        .is_some_and(|end| next >= *end)
                    {
                        self.behind.remove(&partition);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    if self.behind.contains(&partition) && self.end_reached(partition) {
                        self.behind.remove(&partition);
                        // The end it had at start is reached, possibly past markers only.
                        if let Some(end) = self.start_ends.get(&partition) {
                            let applied = self.applied_to.entry(partition).or_insert(*end);
                            *applied = (*applied).max(*end);
                        }
                    }
                }
                Some(Err(error)) => {
                    telemetry::error("consent", "consume");
                    tracing::warn!(%error, "reading the consent topic failed; retrying");
                    break;
                }
            }
            wait = Duration::ZERO;
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
        if self.behind.is_empty() {
            let current = current_in(&applier.tables, applier.copartitioned);
            applier.republishing.run(&current, effects);
        }
        read
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

/// Whether a consent record is an override of a stale record, written by an enforcer.
fn is_override(message: &BorrowedMessage<'_>) -> bool {
    message.headers().is_some_and(|headers| {
        crate::delivery::headers::raw(headers).any(|h| h.name == REPUBLISHED_HEADER.as_bytes())
    })
}

/// Whether an override applies over a state it was not written for: one with the same time
/// or a later one and other grants, or a failed-closed one (a CMP record it landed after
/// without having read it; the override of a failed-closed user reads back malformed). An
/// override applies only over an older state, or as the same state again.
fn overtaken(
    stored: Option<ConsentState>,
    update: &Result<ConsentUpdate, Rejection>,
    record_time_ms: i64,
) -> bool {
    match (stored, update) {
        (Some(stored), Ok(ConsentUpdate::Set(_))) if stored.is_failed_closed() => true,
        (Some(stored), Ok(ConsentUpdate::Set(state))) => {
            let applied = ConsentState {
                updated_at_ms: state.updated_at_ms.min(record_time_ms),
                ..*state
            };
            applied != stored && applied.updated_at_ms <= stored.updated_at_ms
        }
        _ => false,
    }
}

/// A user's state now in the table of a consent partition.
fn current_in(
    tables: &[ConsentTable],
    copartitioned: bool,
) -> impl Fn(i32, &str) -> Option<ConsentState> + '_ {
    move |partition, user| tables[table_index(copartitioned, partition, tables.len())].get(user)
}

/// Which of `tables` tables (at least one) holds the users of consent `partition`.
fn table_index(copartitioned: bool, partition: i32, tables: usize) -> usize {
    let index = if copartitioned {
        usize::try_from(partition).unwrap_or(0)
    } else {
        0
    };
    index.min(tables.saturating_sub(1))
}

impl Applier {
    fn table_of(&self, partition: i32) -> &ConsentTable {
        &self.tables[table_index(self.copartitioned, partition, self.tables.len())]
    }

    fn table_mut(&mut self, partition: i32) -> &mut ConsentTable {
        let index = table_index(self.copartitioned, partition, self.tables.len());
        &mut self.tables[index]
    }

    /// Forgets a consent partition no longer followed (co-partitioned mode).
    fn forget_partition(&mut self, partition: i32) {
        if self.copartitioned {
            let empty = ConsentTable::new(self.history_window_ms, self.history_max_changes);
            let table = std::mem::replace(self.table_mut(partition), empty);
            self.republishing
                .forget_partition(partition, &|user| table.get(user));
        }
    }

    /// Applies one consent record to the table. False if it was not applied because the
    /// writes that must finish before it could not (the service is stopping or failed).
    fn apply(
        &mut self,
        message: &BorrowedMessage<'_>,
        now_ms: i64,
        effects: &mut dyn ConsentEffects,
    ) -> bool {
        self.metrics.received.increment(1);
        let user = match parse_key(message.key()) {
            Ok(user) => user,
            Err(reason) => {
                self.metrics.rejected(reason);
                return true;
            }
        };
        // Without a Kafka timestamp, the time it is read stands in.
        let record_time_ms = message.timestamp().to_millis().unwrap_or(now_ms);
        let partition = message.partition();
        let update = parse_value(message.payload(), record_time_ms, &self.vocabulary);
        let all = self.all_categories;
        let is_override = is_override(message);
        let table = self.table_mut(partition);
        if is_override && overtaken(table.get(user), &update, record_time_ms) {
            // Written over a state it had not read: stale, and overridden in turn.
            self.metrics.rejected(Rejection::Stale);
            self.republishing.stale(partition, user, message.offset());
            return true;
        }
        if table.may_narrow(user, &update, record_time_ms, all) {
            if !effects.before_revocation() {
                return false;
            }
            // When it takes effect: nothing judged before it lands after this.
            tracing::debug!(
                partition,
                offset = message.offset(),
                "applying a consent record that may narrow a grant"
            );
        }
        let table = self.table_mut(partition);
        // An override read back with a different state before it: that state came from the
        // stale record it overrode (compaction removed the newer record between them), and the
        // states in force between the two are unknown.
        let overrode = is_override
            && table
                .get(user)
                .is_some_and(|stored| update.is_ok_and(|u| u != ConsentUpdate::Set(stored)));
        let outcome = table.apply_record(user, update, record_time_ms, now_ms);
        if overrode {
            table.forget_history(user);
        }
        let superseded = match outcome {
            RecordOutcome::Removed => {
                self.metrics.removed.increment(1);
                true
            }
            RecordOutcome::Stored { future_dated } => {
                self.metrics.applied.increment(1);
                if future_dated {
                    self.metrics.future_dated.increment(1);
                }
                effects.applied(user);
                true
            }
            RecordOutcome::Stale { .. } => {
                self.metrics.rejected(Rejection::Stale);
                self.republishing.stale(partition, user, message.offset());
                false
            }
            RecordOutcome::FailedClosed(reason) => {
                self.metrics.rejected(reason);
                effects.applied(user);
                true
            }
        };
        if superseded {
            self.republishing.superseded(partition, user);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(bits: u64, updated_at_ms: i64) -> ConsentState {
        ConsentState {
            granted: crate::vocabulary::CategorySet::from_bits(bits),
            updated_at_ms,
        }
    }

    #[test]
    fn an_override_applies_only_over_an_older_state_or_as_the_same_one() {
        let set = |s| Ok(ConsentUpdate::Set(s));
        // Over an older state (a stale record left by compaction), or the same again: applies.
        assert!(!overtaken(Some(state(1, 10)), &set(state(2, 20)), 99));
        assert!(!overtaken(Some(state(2, 20)), &set(state(2, 20)), 99));
        // Over a record with the same time and other grants, or a later one: overtaken.
        assert!(overtaken(Some(state(1, 20)), &set(state(2, 20)), 99));
        assert!(overtaken(Some(state(1, 30)), &set(state(2, 20)), 99));
        // A valid override over a failed-closed user was written before the malformed record.
        assert!(overtaken(
            Some(ConsentState::FAILED_CLOSED),
            &set(state(2, 20)),
            99
        ));
        // No state, or an override that reads back malformed: applies.
        assert!(!overtaken(None, &set(state(2, 20)), 99));
        assert!(!overtaken(Some(state(1, 30)), &Err(Rejection::NotJson), 99));
    }
}
