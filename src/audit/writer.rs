//! The audit log's own thread: writes the queued changes in batches and commits, per batch,
//! how far the consent and privacy topics are audited, to this instance's checkpoint group.
//! At-least-once: the offsets are committed once every record of the batch is acknowledged
//! (a crash between the two writes the batch again after the restart). Exactly-once: records
//! and offsets are one transaction of the log's own transactional producer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::record::{encode, Names};
use super::{Checkpoint, Item, Shared, View};
use crate::config::{AuditConfig, Config, Guarantee};
use crate::kafka::{consent_consumer_config, producer_config, retry, KafkaContext};
use crate::telemetry;
use crate::vocabulary::Vocabulary;

/// Queued items taken per batch, at most.
const MAX_BATCH: usize = 10_000;
/// How long a batch's acknowledgements and commit may take before it is tried again.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the checkpoint is committed again when nothing changes: a group's committed
/// offsets expire (`offsets.retention.minutes`, 7 days by default) when they are not renewed.
const RENEW_EVERY: Duration = Duration::from_secs(600);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) struct Writer {
    producer: BaseProducer<AuditContext>,
    producer_config: ClientConfig,
    checkpoint: BaseConsumer<KafkaContext>,
    topic: String,
    names: Names,
    vocabulary: Arc<Vocabulary>,
    shared: Arc<Shared>,
    /// Gone once every `Auditor` handle is dropped.
    alive: Weak<()>,
    exactly_once: bool,
    /// The offsets last committed, per view and partition.
    committed: Checkpoint,
    last_commit: Instant,
    written: Counter,
    failures: Counter,
    pending: Gauge,
}

/// Counts failed deliveries of the batch being written.
struct AuditContext {
    inner: KafkaContext,
    failed: AtomicU64,
}

impl ClientContext for AuditContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
}

impl ProducerContext for AuditContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Writer {
    /// Reads the checkpoint and makes the clients. Returns the writer and the checkpoint.
    pub(super) fn start(
        config: &Config,
        audit: &AuditConfig,
        vocabulary: Arc<Vocabulary>,
        shared: Arc<Shared>,
        alive: Weak<()>,
        (consent_partitions, privacy_partitions): (i32, i32),
        deadline: Instant,
    ) -> KafkaResult<(Writer, Checkpoint)> {
        let instance = audit
            .instance
            .clone()
            .unwrap_or_else(|| crate::kafka::transactional_id(config));
        let group = audit
            .checkpoint_group
            .clone()
            .unwrap_or_else(|| format!("{instance}.audit"));
        let mut consumer_config = consent_consumer_config(config);
        consumer_config
            .set("group.id", &group)
            .set("statistics.interval.ms", "0");
        let checkpoint: BaseConsumer<KafkaContext> =
            consumer_config.create_with_context(KafkaContext::new(None))?;
        let names = Names {
            consent_topic: config.consent.topic.clone(),
            privacy_topic: config.privacy.as_ref().map(|p| p.topic.clone()),
            instance,
        };
        let exactly_once = config.delivery.guarantee == Guarantee::ExactlyOnce;
        let mut producer_config = producer_config(config);
        producer_config
            .set("statistics.interval.ms", "0")
            .set("queue.buffering.max.messages", "100000");
        if exactly_once {
            // From the instance: stable across its restarts, so a restart fences the
            // transaction a killed predecessor left open.
            producer_config.set("transactional.id", format!("{}-audit", names.instance));
        }
        // First: starting its transactions aborts one a killed predecessor left open, whose
        // offsets would keep the checkpoint from being read ("unstable offset commit").
        let producer = new_producer(&producer_config, exactly_once, deadline)?;
        let mut query = TopicPartitionList::new();
        for partition in 0..consent_partitions {
            query.add_partition(&names.consent_topic, partition);
        }
        if let Some(topic) = &names.privacy_topic {
            for partition in 0..privacy_partitions {
                query.add_partition(topic, partition);
            }
        }
        let answer = retry(deadline, "reading the audit log's checkpoint", |left| {
            checkpoint.committed_offsets(query.clone(), left)
        })?;
        let mut committed = HashMap::new();
        for element in answer.elements() {
            let view = if element.topic() == names.consent_topic {
                View::Consent
            } else {
                View::Privacy
            };
            if let Offset::Offset(offset) = element.offset() {
                committed.insert((view, element.partition()), offset);
            }
        }
        tracing::info!(partitions = committed.len(), "audit log checkpoint read");
        let writer = Writer {
            producer,
            producer_config,
            checkpoint,
            topic: audit.topic.clone(),
            names,
            vocabulary,
            shared,
            alive,
            exactly_once,
            committed: committed.clone(),
            last_commit: Instant::now(),
            written: metrics::counter!(telemetry::AUDIT_RECORDS_WRITTEN),
            failures: metrics::counter!(telemetry::AUDIT_WRITE_FAILURES),
            pending: metrics::gauge!(telemetry::AUDIT_PENDING),
        };
        Ok((writer, committed))
    }

    pub(super) fn spawn(self) -> KafkaResult<()> {
        let guard = EndOnDrop(self.shared.clone());
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                let _guard = guard;
                self.run();
            })
            .map(|_| ())
            .map_err(|error| KafkaError::ClientCreation(format!("audit log thread: {error}")))
    }

    fn run(mut self) {
        let mut batch: Vec<Item> = Vec::new();
        let mut backoff = FIRST_BACKOFF;
        let mut failing = false;
        loop {
            let closing = {
                let mut queue = self.shared.lock();
                if batch.is_empty() {
                    if queue.items.is_empty() && queue.closing.is_none() {
                        queue = self
                            .shared
                            .wake
                            .wait_timeout(queue, Duration::from_secs(1))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    let take = queue.items.len().min(MAX_BATCH);
                    batch.extend(queue.items.drain(..take));
                    let changes = batch
                        .iter()
                        .filter(|item| matches!(item, Item::Change(_)))
                        .count();
                    queue.changes -= changes.min(queue.changes);
                }
                let in_batch = batch
                    .iter()
                    .filter(|item| matches!(item, Item::Change(_)))
                    .count();
                self.pending.set((queue.changes + in_batch) as f64);
                if queue.closing.is_none() && self.alive.strong_count() == 0 {
                    queue.closing = Some(Instant::now() + WRITE_TIMEOUT);
                }
                queue.closing
            };
            if batch.is_empty() {
                if closing.is_some() {
                    self.end(false);
                    return;
                }
                if self.last_commit.elapsed() >= RENEW_EVERY && !self.committed.is_empty() {
                    // Renewed like a batch with no record; a failure is tried again next time.
                    let _ = self.write(&[]);
                }
                continue;
            }
            let timeout = closing.map_or(WRITE_TIMEOUT, |deadline| {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(WRITE_TIMEOUT)
            });
            match self.write_within(&batch, timeout) {
                Ok(written) => {
                    self.written.increment(written);
                    batch.clear();
                    backoff = FIRST_BACKOFF;
                    if failing {
                        failing = false;
                        tracing::info!("audit log writes succeed again");
                    }
                }
                Err(error) => {
                    self.failures.increment(1);
                    if !failing {
                        failing = true;
                        tracing::warn!(%error, "writing the audit log failed; retrying (consent and privacy changes are queued meanwhile)");
                    }
                    if closing.is_some_and(|deadline| Instant::now() >= deadline) {
                        self.end(true);
                        return;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Tells `close` the writer has ended.
    fn end(&self, unwritten: bool) {
        let mut queue = self.shared.lock();
        queue.ended = true;
        queue.unwritten |= unwritten;
        drop(queue);
        self.shared.wake.notify_all();
    }

    fn write(&mut self, batch: &[Item]) -> KafkaResult<u64> {
        self.write_within(batch, WRITE_TIMEOUT)
    }

    /// Writes the batch's changes and commits the offsets it reaches (or, for an empty batch,
    /// the last ones again). Returns how many records were written.
    fn write_within(&mut self, batch: &[Item], timeout: Duration) -> KafkaResult<u64> {
        let mut offsets = self.committed.clone();
        for item in batch {
            let (key, next) = match item {
                Item::Change(change) => (
                    (change.source.view, change.source.partition),
                    change.source.offset + 1,
                ),
                Item::Advance {
                    view,
                    partition,
                    next,
                } => ((*view, *partition), *next),
            };
            let entry = offsets.entry(key).or_insert(next);
            *entry = (*entry).max(next);
        }
        let mut list = TopicPartitionList::new();
        for ((view, partition), offset) in &offsets {
            let topic = match view {
                View::Consent => self.names.consent_topic.as_str(),
                View::Privacy => self.names.privacy_topic.as_deref().unwrap_or_default(),
            };
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        let result = if self.exactly_once {
            self.write_transaction(batch, &list, timeout)
        } else {
            self.write_then_commit(batch, &list, timeout)
        };
        match result {
            Ok(written) => {
                self.committed = offsets;
                self.last_commit = Instant::now();
                Ok(written)
            }
            Err(error) => Err(error),
        }
    }

    fn send_all(&self, batch: &[Item]) -> KafkaResult<u64> {
        let mut written = 0;
        for item in batch {
            let Item::Change(change) = item else { continue };
            let value = encode(change, &self.names, &self.vocabulary);
            let headers = OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
            let mut record = BaseRecord::to(&self.topic)
                .key(change.user.as_bytes())
                .payload(value.as_slice())
                .headers(headers);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((error, _)) => return Err(error),
                }
            }
            written += 1;
        }
        Ok(written)
    }

    fn write_then_commit(
        &self,
        batch: &[Item],
        offsets: &TopicPartitionList,
        timeout: Duration,
    ) -> KafkaResult<u64> {
        self.producer.context().failed.store(0, Ordering::SeqCst);
        let written = self.send_all(batch)?;
        let flushed = self.producer.flush(timeout);
        let failed = self.producer.context().failed.load(Ordering::SeqCst);
        if flushed.is_err() || failed > 0 {
            // Nothing of this attempt is delivered after the retry's copy.
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            flushed?;
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
        }
        if offsets.count() > 0 {
            self.checkpoint.commit(offsets, CommitMode::Sync)?;
        }
        Ok(written)
    }

    fn write_transaction(
        &mut self,
        batch: &[Item],
        offsets: &TopicPartitionList,
        timeout: Duration,
    ) -> KafkaResult<u64> {
        let attempt = (|| {
            self.producer.begin_transaction()?;
            let written = self.send_all(batch)?;
            if offsets.count() > 0 {
                let group = self.checkpoint.group_metadata().ok_or_else(|| {
                    KafkaError::ClientCreation("the checkpoint group has no metadata".into())
                })?;
                self.producer
                    .send_offsets_to_transaction(offsets, &group, timeout)?;
            }
            commit(&self.producer, timeout)?;
            Ok(written)
        })();
        if let Err(error) = &attempt {
            let aborted = match error {
                KafkaError::Transaction(e) if e.is_fatal() => false,
                _ => self.producer.abort_transaction(timeout).is_ok(),
            };
            if !aborted {
                // Fatal, or the abort failed: a new producer fences the old one's transaction.
                match new_producer(&self.producer_config, true, Instant::now() + timeout) {
                    Ok(producer) => self.producer = producer,
                    Err(error) => {
                        tracing::warn!(%error, "cannot make a new audit log producer; retrying");
                    }
                }
            }
        }
        attempt
    }
}

/// Commits the open transaction, trying again while the error says a retry may succeed
/// (a timeout: the commit may still be under way, and an abort now could race it).
fn commit(producer: &BaseProducer<AuditContext>, timeout: Duration) -> KafkaResult<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match producer.commit_transaction(deadline.saturating_duration_since(Instant::now())) {
            Err(KafkaError::Transaction(error))
                if error.is_retriable() && Instant::now() < deadline => {}
            result => return result,
        }
    }
}

/// Marks the writer ended however its thread ends (a panic too), so that `close` does not
/// wait for it and no more changes are queued for it.
struct EndOnDrop(Arc<Shared>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        if !queue.ended {
            queue.ended = true;
            queue.unwritten |= !queue.items.is_empty() || std::thread::panicking();
            if std::thread::panicking() {
                tracing::error!(
                    "the audit log writer failed: no consent change is applied any more"
                );
            }
        }
        drop(queue);
        self.0.wake.notify_all();
    }
}

fn new_producer(
    config: &ClientConfig,
    exactly_once: bool,
    deadline: Instant,
) -> KafkaResult<BaseProducer<AuditContext>> {
    let producer: BaseProducer<AuditContext> = config.create_with_context(AuditContext {
        inner: KafkaContext::new(None),
        failed: AtomicU64::new(0),
    })?;
    if exactly_once {
        retry(deadline, "starting the audit log's transactions", |left| {
            producer.init_transactions(left)
        })?;
    }
    Ok(producer)
}
