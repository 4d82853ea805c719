//! Keeps who is suppressed current: reads every partition of the privacy-requests topic from
//! the beginning at start, then follows it, like the consent topic (see
//! [`crate::consent::follower`]): start-up waits until it is read to the end it had then, and
//! a batch of events waits until every request acknowledged before the batch was read is
//! applied. A request that suppresses someone not suppressed yet waits, before it applies,
//! for every write judged before it, as a revocation does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::request::{encode_done, read_request, PrivacyRejection, PrivacyUpdate, RequestType};
use super::Deletion;
use crate::audit::{Auditor, Change, Snapshot, Source, View};
use crate::config::{Config, PrivacyConfig};
use crate::consent::follower::{ConsentEffects, EndOffsets, PendingSample};
use crate::consent::read_progress::ReadProgress;
use crate::consent::record::{content_type, Encoding};
use crate::consent::republish::OWNER_GRACE;
use crate::consent::sampler::Sampler;
use crate::consent::suppressions::PrivacyOutcome;
use crate::consent::ConsentTable;
use crate::kafka::{consent_consumer_config, retry, KafkaContext};
use crate::telemetry;

/// Delete requests carried out per turn of the loop, at most.
const DELETIONS_PER_TURN: usize = 16;

pub struct PrivacyFollower {
    consumer: BaseConsumer<KafkaContext>,
    watermarks: BaseConsumer<KafkaContext>,
    sampler: Sampler,
    topic: String,
    format: crate::config::ConsentFormat,
    timeout: Duration,
    assigned: Vec<i32>,
    progress: ReadProgress,
    halted: bool,
    metrics: PrivacyMetrics,
    /// Delete requests read and not carried out yet (by this instance or, read back marked
    /// done, by another), by partition and user.
    pending: HashMap<(i32, Box<str>), PendingDeletion>,
    /// The request in force for each key with a pending deletion (its time and type): the
    /// deletion is marked done only while it is still the one in force, so that the mark
    /// never writes an older request over a newer one.
    in_force: HashMap<(i32, Box<str>), (i64, RequestType)>,
    /// The audit log, when configured.
    pub audit: Option<Auditor>,
}

/// A valid request (or, `None`, a tombstone) read, for deletion tracking.
struct Tracked {
    user: Box<str>,
    /// Its type, time, and whether it is marked done.
    request: Option<(RequestType, i64, bool)>,
    encoding: Encoding,
}

#[derive(Debug, Clone)]
struct PendingDeletion {
    kind: RequestType,
    requested_at_ms: i64,
    encoding: Encoding,
    /// Since when it waits for the instance that owns its partition.
    read_at: Instant,
}

struct PrivacyMetrics {
    received: Counter,
    deletions: Counter,
    rejected: [Counter; 5],
    suppressed: Gauge,
}

impl PrivacyFollower {
    pub fn start(
        config: &Config,
        privacy: &PrivacyConfig,
        deadline: Instant,
    ) -> KafkaResult<PrivacyFollower> {
        // Its own group name (it never joins one) and no statistics (nothing reads them).
        let client = || {
            let mut client = consent_consumer_config(config);
            client.set(
                "group.id",
                format!("{}.privacy-table", config.kafka.group_id),
            );
            client.set("statistics.interval.ms", "0");
            client
        };
        let consumer: BaseConsumer<KafkaContext> =
            client().create_with_context(KafkaContext::new(None))?;
        let watermarks: BaseConsumer<KafkaContext> = client()
            .set("isolation.level", "read_uncommitted")
            .create_with_context(KafkaContext::new(None))?;
        let sampler = Sampler::start(
            client().create_with_context(KafkaContext::new(None))?,
            privacy.topic.clone(),
        )
        .map_err(|error| KafkaError::ClientCreation(format!("privacy sampling thread: {error}")))?;
        let mut follower = PrivacyFollower {
            consumer,
            watermarks,
            sampler,
            topic: privacy.topic.clone(),
            format: privacy.format,
            timeout: config.kafka.startup_timeout().value,
            assigned: Vec::new(),
            progress: ReadProgress::default(),
            halted: false,
            pending: HashMap::new(),
            in_force: HashMap::new(),
            audit: None,
            metrics: PrivacyMetrics {
                received: metrics::counter!(telemetry::PRIVACY_REQUESTS_RECEIVED),
                deletions: metrics::counter!(telemetry::PRIVACY_DELETIONS),
                rejected: PrivacyRejection::ALL.map(|reason| {
                    metrics::counter!(telemetry::PRIVACY_REQUESTS_REJECTED, "reason" => reason.as_str())
                }),
                suppressed: metrics::gauge!(telemetry::SUPPRESSED_USERS),
            },
        };
        let count = follower.partition_count(deadline)?;
        follower.follow_up_to(count, deadline)?;
        Ok(follower)
    }

    fn partition_count(&self, deadline: Instant) -> KafkaResult<i32> {
        retry(deadline, "reading the privacy topic's partitions", |left| {
            let metadata = self.watermarks.fetch_metadata(Some(&self.topic), left)?;
            let count = metadata
                .topics()
                .iter()
                .find(|t| t.name() == self.topic)
                .map_or(0, |t| t.partitions().len());
            Ok(i32::try_from(count).unwrap_or(i32::MAX))
        })
    }

    /// Follows every partition below `count` not followed yet, from its beginning.
    fn follow_up_to(&mut self, count: i32, deadline: Instant) -> KafkaResult<()> {
        let added: Vec<i32> = (0..count).filter(|p| !self.assigned.contains(p)).collect();
        if added.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for &partition in &added {
            list.add_partition_offset(&self.topic, partition, Offset::Beginning)?;
            let (low, high) = retry(deadline, "reading the privacy topic's offsets", |left| {
                self.watermarks
                    .fetch_watermarks(&self.topic, partition, left)
            })?;
            self.progress.follow(partition, low, high);
        }
        self.consumer.incremental_assign(&list)?;
        self.assigned.extend(added);
        self.assigned.sort_unstable();
        Ok(())
    }

    /// Partitions followed.
    pub fn partitions(&self) -> i32 {
        self.assigned.last().map_or(0, |last| last + 1)
    }

    /// True once every partition has been read up to the end it had when it was followed.
    pub fn loaded(&self) -> bool {
        self.progress.loaded()
    }

    pub fn request_sample(&self, timeout: Duration) -> PendingSample {
        let from_new = self.assigned.last().map_or(0, |last| last + 1);
        self.sampler
            .request(self.assigned.clone(), Some(from_new), timeout)
    }

    /// True if every request before `ends` is applied (following partitions added since).
    pub fn reached(&mut self, ends: &EndOffsets) -> bool {
        if self.halted {
            return false;
        }
        if let Some(count) = ends.partition_count.and_then(|c| i32::try_from(c).ok()) {
            let followed = self.assigned.last().map_or(0, |last| last + 1);
            if count > followed {
                if let Err(error) = self.follow_up_to(count, Instant::now() + self.timeout) {
                    tracing::warn!(%error, "cannot follow privacy partitions added since start");
                }
                return false;
            }
        }
        if self.applied_through(ends) {
            return true;
        }
        self.progress.catch_up_with(&self.consumer);
        self.applied_through(ends)
    }

    fn applied_through(&self, ends: &EndOffsets) -> bool {
        ends.ends
            .iter()
            .all(|(p, end)| !self.assigned.contains(p) || self.progress.applied_through(*p, *end))
    }

    /// Applies the requests that arrive within `timeout`, at most `budget`, to every table.
    pub fn poll(
        &mut self,
        tables: &mut [ConsentTable],
        timeout: Duration,
        budget: usize,
        effects: &mut dyn ConsentEffects,
    ) -> usize {
        let mut read = 0;
        let mut wait = timeout;
        while read < budget && !self.halted {
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    read += 1;
                    let Some(tracked) = self.apply(&message, tables, effects) else {
                        tracing::warn!("a suppression could not be applied: judging stops");
                        self.halted = true;
                        break;
                    };
                    let partition = message.partition();
                    let next = message.offset() + 1;
                    drop(message);
                    if let Some(tracked) = tracked {
                        self.track_deletion(partition, tracked);
                    }
                    self.progress.applied(partition, next);
                    if let Some(audit) = &self.audit {
                        audit.advance(View::Privacy, partition, next);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    if self.progress.is_behind(partition) {
                        self.progress.end_reached(partition);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "reading the privacy topic failed; retrying");
                    break;
                }
            }
            wait = Duration::ZERO;
        }
        if let Some(table) = tables.first() {
            self.metrics
                .suppressed
                .set(table.suppressions().suppressed() as f64);
        }
        read
    }

    /// `None` if a suppression could not wait for the writes judged before it; else the
    /// request, if it is one that deletion tracking looks at.
    fn apply(
        &self,
        message: &BorrowedMessage<'_>,
        tables: &mut [ConsentTable],
        effects: &mut dyn ConsentEffects,
    ) -> Option<Option<Tracked>> {
        self.metrics.received.increment(1);
        // Any UTF-8 key, however long: an event can carry an identifier longer than a consent
        // state's key may be, and it must still be suppressed.
        let Some(user) = message.key().and_then(|key| std::str::from_utf8(key).ok()) else {
            self.rejected(PrivacyRejection::BadKey);
            return Some(None);
        };
        let record_time_ms = message
            .timestamp()
            .to_millis()
            .unwrap_or_else(crate::clock::now_ms);
        let encoding = Encoding::of(
            self.format,
            content_type(message.headers()),
            message.payload(),
        );
        let update = read_request(message.payload(), encoding, record_time_ms);
        let suppresses = tables
            .iter()
            .any(|table| table.suppressions().would_suppress(user, &update));
        if suppresses && !effects.before_revocation() {
            return None;
        }
        let audit = self
            .audit
            .as_ref()
            .filter(|audit| audit.covers(View::Privacy, message.partition(), message.offset()));
        let before = audit
            .and(tables.first())
            .map(|t| t.suppressions().view(user));
        let mut outcome = None;
        for table in tables.iter_mut() {
            outcome = Some(table.suppressions_mut().apply(user, update, record_time_ms));
        }
        if let (Some(audit), Some(before), Some(table)) = (audit, before, tables.first()) {
            let after = table.suppressions().view(user);
            if before != after {
                audit.record(Change {
                    user: user.into(),
                    before: Snapshot::Privacy(before),
                    after: Snapshot::Privacy(after),
                    rejected: match outcome {
                        Some(PrivacyOutcome::FailedClosed(reason)) => Some(reason.as_str()),
                        _ => None,
                    },
                    source: Source {
                        view: View::Privacy,
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis(),
                        learned: None,
                    },
                    applied_at_ms: crate::clock::now_ms(),
                });
            }
        }
        let tracked = match update {
            Ok(PrivacyUpdate::Request {
                kind,
                requested_at_ms,
                deleted,
            }) => Some(Tracked {
                user: Box::from(user),
                request: Some((kind, requested_at_ms, deleted)),
                encoding,
            }),
            Ok(PrivacyUpdate::Remove) => Some(Tracked {
                user: Box::from(user),
                request: None,
                encoding,
            }),
            Err(_) => None,
        };
        if let Some(PrivacyOutcome::FailedClosed(reason)) = outcome {
            self.rejected(reason);
        }
        tracing::debug!(
            partition = message.partition(),
            offset = message.offset(),
            ?outcome,
            "privacy request applied"
        );
        Some(tracked)
    }

    /// A delete request is pending until it is read back marked done (`deletedAt`, written
    /// by whichever instance carried it out) or a newer delete request replaces it.
    fn track_deletion(&mut self, partition: i32, tracked: Tracked) {
        let Tracked {
            user,
            request,
            encoding,
        } = tracked;
        let key = (partition, user);
        let Some((kind, requested_at_ms, deleted)) = request else {
            // Withdrawn: a deletion already read is still carried out, never marked done.
            if self.pending.contains_key(&key) {
                self.in_force
                    .insert(key, (i64::MIN, RequestType::Unsuppress));
            }
            return;
        };
        let pending = self.pending.get(&key);
        if pending.is_some_and(|p| p.requested_at_ms > requested_at_ms) {
            return;
        }
        if pending.is_some() || kind.deletes() {
            self.in_force.insert(key.clone(), (requested_at_ms, kind));
        }
        if deleted {
            self.in_force.remove(&key);
            self.pending.remove(&key);
        } else if kind.deletes() {
            self.pending.insert(
                key,
                PendingDeletion {
                    kind,
                    requested_at_ms,
                    encoding,
                    read_at: Instant::now(),
                },
            );
        }
    }

    /// Carries out the pending delete requests of the partitions this instance owns, and of
    /// the others once their owner has had [`OWNER_GRACE`] to (a second deletion record is
    /// harmless; none at all is not). False if one could not be finished.
    pub fn run_deletions(&mut self, effects: &mut dyn ConsentEffects) -> bool {
        if self.pending.is_empty() || !self.loaded() {
            return true;
        }
        // A bounded number per turn: each drains the writes before it is marked done.
        let due: Vec<(i32, Box<str>)> = self
            .pending
            .iter()
            .filter(|((partition, _), p)| {
                effects.republishes_for(*partition) || p.read_at.elapsed() >= OWNER_GRACE
            })
            .map(|(key, _)| key.clone())
            .take(DELETIONS_PER_TURN)
            .collect();
        for key in due {
            let Some(pending) = self.pending.remove(&key) else {
                continue;
            };
            // Superseded by a newer request: carried out, but not marked (the mark would write
            // the older request after the newer one; deleting again after a restart is harmless).
            let still_in_force =
                self.in_force.get(&key) == Some(&(pending.requested_at_ms, pending.kind));
            let deletion = Deletion {
                kind: pending.kind,
                requested_at_ms: pending.requested_at_ms,
                partition: key.0,
                done: still_in_force.then(|| {
                    encode_done(
                        pending.kind,
                        pending.requested_at_ms,
                        crate::clock::now_ms(),
                        pending.encoding,
                    )
                }),
            };
            if !effects.delete(&key.1, &deletion) {
                self.pending.insert(key, pending);
                return false;
            }
            self.in_force.remove(&key);
            self.metrics.deletions.increment(1);
        }
        true
    }

    fn rejected(&self, reason: PrivacyRejection) {
        if let Some(i) = PrivacyRejection::ALL.iter().position(|r| *r == reason) {
            self.metrics.rejected[i].increment(1);
        }
    }
}
