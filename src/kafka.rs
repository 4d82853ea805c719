//! Kafka client settings, librdkafka's logs and statistics; the start-up checks of the
//! cluster are in `startup`, the warnings about topic settings in `topic_configs`.

pub mod commit;
mod startup;
mod topic_configs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

use crate::config::{Config, ConfigError, Guarantee};
use crate::consent::hidden::HiddenRecords;
use crate::secrets::{Redactor, REDACTED};
pub use startup::{
    check_copartitioned, check_topics, configured_topics, is_transient, retry, StartupError,
};
pub use topic_configs::warn_about_topic_configs;

pub use crate::config::PROTECTED_PROPERTIES;

/// The producer's local queue bound (librdkafka `queue.buffering.max.messages`); overridable
/// in `kafka.producer_properties`.
pub const PRODUCER_QUEUE_MESSAGES: &str = "10000";

/// The longest wait before reconnecting to a broker (librdkafka `reconnect.backoff.max.ms`).
pub const RECONNECT_BACKOFF_MAX_MS: &str = "1000";

/// How often librdkafka reports statistics, from which the lag and producer gauges are computed.
pub const STATISTICS_INTERVAL_MS: &str = "5000";

fn base(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("client.id", "consent-enforcer")
        // librdkafka backs reconnects off up to 10 s (the Java client: 1 s); after a broker
        // restart every coordinator connection then sat idle that long, and an exactly-once
        // commit waited on each in turn. Overridable in `kafka.properties`.
        .set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS)
        .set_log_level(RDKafkaLogLevel::Warning);
    client
}

/// Which librdkafka client a scoped property table applies to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Consumer,
    Producer,
    Admin,
}

fn with_user_properties(mut client: ClientConfig, config: &Config, role: Role) -> ClientConfig {
    let scoped = match role {
        Role::Consumer => &config.kafka.consumer_properties,
        Role::Producer => &config.kafka.producer_properties,
        Role::Admin => return with_properties(client, &config.kafka.properties),
    };
    client = with_properties(client, &config.kafka.properties);
    client = with_properties(client, scoped);
    // librdkafka's `debug` contexts log at debug level, which the warning level set in `base`
    // would drop: whoever sets `debug` wants to read them (at RUST_LOG librdkafka=debug).
    if client.get("debug").is_some() {
        client.set_log_level(RDKafkaLogLevel::Debug);
    }
    client
}

fn with_properties(
    mut client: ClientConfig,
    properties: &std::collections::BTreeMap<String, String>,
) -> ClientConfig {
    for (key, value) in properties {
        client.set(key, value);
    }
    client
}

/// Builds every client the enforcer creates, without connecting (no bootstrap servers), so
/// that a property librdkafka refuses, when it is set or when the client is created (an
/// unknown SASL mechanism), is a configuration error naming the key and why, never a secret.
pub fn check_client_configs(config: &Config) -> Result<(), ConfigError> {
    let redactor = Redactor::of(&config.kafka);
    let clients = [
        (admin_config(config), Role::Admin),
        (event_consumer_config(config), Role::Consumer),
        (consent_consumer_config(config), Role::Consumer),
        (producer_config(config), Role::Producer),
    ];
    for (mut client, role) in clients {
        if let Err(error) = client.create_native_config() {
            return Err(refused(error, &redactor));
        }
        client.remove("bootstrap.servers");
        let created = match role {
            Role::Producer => client
                .create_with_context::<_, rdkafka::producer::BaseProducer<KafkaContext>>(
                    KafkaContext::new(None),
                )
                .map(drop),
            Role::Consumer | Role::Admin => client
                .create_with_context::<_, rdkafka::consumer::BaseConsumer<KafkaContext>>(
                    KafkaContext::new(None),
                )
                .map(drop),
        };
        if let Err(error) = created {
            return Err(refused(error, &redactor));
        }
    }
    Ok(())
}

fn refused(error: KafkaError, redactor: &Redactor) -> ConfigError {
    match error {
        KafkaError::ClientConfig(_, reason, key, value) => {
            // librdkafka quotes the value it refuses; whatever the key, it is not shown.
            let reason = reason.replace(&format!("\"{value}\""), REDACTED);
            ConfigError::Property {
                reason: redactor.redact(reason.trim()),
                key,
            }
        }
        other => ConfigError::Client {
            reason: redactor.redact(other.to_string().trim()),
        },
    }
}

/// An admin client, for the start-up checks.
pub fn admin_config(config: &Config) -> ClientConfig {
    with_user_properties(base(config), config, Role::Admin)
}

/// The group consumer of the input topics. Offsets are committed by the enforcer itself,
/// only once every write for an event is acknowledged.
pub fn event_consumer_config(config: &Config) -> ClientConfig {
    let mut client = base(config);
    client
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts from the beginning: nothing already in the topic is skipped.
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    with_user_properties(client, config, Role::Consumer)
}

/// The consumer of the consent topic: assigned every partition, read from the beginning,
/// never committing (the table is rebuilt from the topic at each start).
pub fn consent_consumer_config(config: &Config) -> ClientConfig {
    let mut client = base(config);
    client
        // librdkafka wants a group for assign(); this one never joins, never commits.
        .set(
            "group.id",
            format!("{}.consent-table", config.kafka.group_id),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    let mut client = with_user_properties(client, config, Role::Consumer);
    // Not overridable: start-up knows it has read a partition to its end from these events.
    client.set("enable.partition.eof", "true");
    client
}

/// The producer of destination, dead-letter and re-published consent records.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut client = base(config);
    // Room for the largest accepted event plus its key and headers.
    let max_message = (config.input.max_event_bytes + 1_048_576).max(1_000_000);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Java-compatible murmur2 for keyed records, so downstream consumers can co-partition.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        // A short local queue: a full queue makes `send` wait, which paces reading and bounds
        // the writes a crash can leave unacknowledged. (The benchmark once measured
        // acknowledgements 2-4x slower with librdkafka's default of 100,000; that was while
        // `Delivery::poll` served one delivery report per call, and is not re-measured.)
        .set("queue.buffering.max.messages", PRODUCER_QUEUE_MESSAGES)
        .set("message.max.bytes", max_message.to_string())
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    if config.delivery.guarantee == Guarantee::ExactlyOnce {
        client.set("transactional.id", transactional_id(config));
    }
    with_user_properties(client, config, Role::Producer)
}

/// `delivery.transactional_id`, or `<group_id>-<hostname>`.
pub fn transactional_id(config: &Config) -> String {
    config
        .delivery
        .transactional_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", config.kafka.group_id, hostname()))
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return "localhost".to_owned();
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// Forwards librdkafka's own logs to `tracing` and turns its statistics into lag gauges.
/// librdkafka logs carry broker addresses and topic names, never payloads.
pub struct KafkaContext {
    /// The gauge set from statistics: consumer lag summed per topic.
    lag: Option<LagGauge>,
    /// For the consent consumer: records held back behind open transactions.
    hidden: Option<Arc<Mutex<HiddenRecords>>>,
}

pub enum LagGauge {
    /// One gauge for the topic's total lag.
    Total(metrics::Gauge),
    /// One gauge per topic, labelled `topic`.
    PerTopic(&'static str),
}

impl KafkaContext {
    pub fn new(lag: Option<LagGauge>) -> KafkaContext {
        KafkaContext { lag, hidden: None }
    }

    /// Also tracks, from statistics, consent records hidden behind open transactions.
    pub fn with_hidden(mut self, hidden: Arc<Mutex<HiddenRecords>>) -> KafkaContext {
        self.hidden = Some(hidden);
        self
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let message = crate::secrets::redact_log(message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // End-of-partition events are how start-up knows the consent table is complete.
        if matches!(error, KafkaError::PartitionEOF(_))
            || matches!(&error, KafkaError::Global(code) if *code == rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        let error = crate::secrets::redact_log(&error.to_string()).into_owned();
        let reason = crate::secrets::redact_log(reason);
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }

    fn stats(&self, statistics: Statistics) {
        if let Some(hidden) = &self.hidden {
            let now = Instant::now();
            let mut hidden = hidden
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for partition in statistics
                .topics
                .values()
                .flat_map(|t| t.partitions.values())
            {
                if partition.partition >= 0 && partition.hi_offset >= 0 && partition.ls_offset >= 0
                {
                    hidden.observe(
                        partition.partition,
                        partition.hi_offset,
                        partition.ls_offset,
                        now,
                    );
                }
            }
        }
        let Some(lag) = &self.lag else { return };
        let mut per_topic: HashMap<&str, i64> = HashMap::new();
        for (name, topic) in &statistics.topics {
            let total = per_topic.entry(name).or_default();
            for partition in topic.partitions.values() {
                // Partition -1 is librdkafka's internal unassigned queue; negative offsets
                // mean "not known yet".
                if partition.partition < 0 || partition.app_offset < 0 || partition.ls_offset < 0 {
                    continue;
                }
                *total += (partition.ls_offset - partition.app_offset).max(0);
            }
        }
        match lag {
            LagGauge::Total(gauge) => gauge.set(per_topic.values().sum::<i64>() as f64),
            LagGauge::PerTopic(name) => {
                for (topic, total) in per_topic {
                    metrics::gauge!(*name, "topic" => topic.to_owned()).set(total as f64);
                }
            }
        }
    }
}

impl ConsumerContext for KafkaContext {}

/// For the clients made only to check a config: their logs go through [`KafkaContext`]
/// (redacted) too; they send nothing.
impl rdkafka::producer::ProducerContext for KafkaContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}
