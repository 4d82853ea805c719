//! The TOML configuration: its shape and its defaults. Reading it is in `load`, the
//! cross-field checks in `validate`, durations in `duration`, the topics it names in `topics`.
//!
//! Every error is one line that names the offending field, so `check-config` and a failed
//! start tell the operator exactly what to fix.

mod duration;
mod interpolate;
mod load;
mod topics;
mod validate;

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use serde::Deserialize;

use crate::secrets::Properties;
pub use duration::{AliasUnit, Duration, DurationKey, DurationSetting};
pub use load::ConfigError;
pub use topics::{ConfiguredTopic, TopicRole};

/// Environment variable that overrides `kafka.bootstrap_servers`.
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// Categories are interned into a 64-bit set; see [`crate::vocabulary`].
pub const MAX_CATEGORIES: usize = 64;
/// Integration names are interned into a 128-bit set.
pub const MAX_INTEGRATION_NAMES: usize = 128;

/// At most this many `[consent.aliases]`: names (categories and aliases) are counted in a
/// 128-bit set while a record is read.
pub const MAX_ALIASES: usize = 64;

/// At most this many `[[jurisdiction]]`: each takes a bit of the state's set.
pub const MAX_JURISDICTIONS: usize = 16;
/// Destinations are numbered in a byte of the delivery tag; see [`crate::delivery::tag`].
pub const MAX_DESTINATIONS: usize = 200;

/// librdkafka settings that the delivery guarantee rests on; `kafka.properties` may not
/// change them (checked when the config is loaded).
pub const PROTECTED_PROPERTIES: [&str; 8] = [
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "enable.partition.eof",
    "transactional.id",
    "isolation.level",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub input: InputConfig,
    pub consent: ConsentConfig,
    pub dead_letter: DeadLetterConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub hold: HoldConfig,
    #[serde(rename = "destination", default)]
    pub destinations: Vec<DestinationConfig>,
    #[serde(rename = "jurisdiction", default)]
    pub jurisdictions: Vec<JurisdictionConfig>,
    /// The privacy-requests topic (suppression), when configured.
    #[serde(default)]
    pub privacy: Option<PrivacyConfig>,
    /// The consent audit log, when configured.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
}

/// `[audit]`: an append-only topic of every change this instance applies to its consent and
/// privacy view.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    pub topic: String,
    #[serde(default)]
    pub format: AuditFormat,
    /// Names this instance in its records. Default: the exactly-once `transactional.id`'s
    /// default, `<group_id>-<hostname>` (or `delivery.transactional_id` when set).
    #[serde(default)]
    pub instance: Option<String>,
    /// The consumer group whose committed offsets say how far this instance has audited the
    /// consent and privacy topics. Default: `<instance>.audit`.
    #[serde(default)]
    pub checkpoint_group: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    #[default]
    Json,
}

/// `[privacy]`: a compacted topic of privacy requests keyed by user identifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    pub topic: String,
    /// How its records are encoded (`proto/consent.proto`'s `PrivacyRequest` for protobuf);
    /// by default by header, else first byte (a JSON request starts with `{`).
    #[serde(default = "auto_format")]
    pub format: ConsentFormat,
}

/// A law the consent of users under it is judged by (`[[jurisdiction]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JurisdictionConfig {
    pub name: String,
    /// ISO 3166-1 alpha-2 country codes (`DE`) and ISO 3166-2 subdivision codes (`US-CA`).
    #[serde(rename = "match")]
    pub codes: Vec<String>,
    pub model: LegalModel,
    /// Opt-out only: what a user with no stored choice is granted.
    #[serde(default)]
    pub granted_by_default: Vec<String>,
    /// What a Global Privacy Control signal denies, whatever else grants it.
    #[serde(default)]
    pub gpc_denies: Vec<String>,
}

/// Whether consent must be given (`opt-in`: GDPR) or may be withdrawn (`opt-out`: CCPA/CPRA
/// and the other US state laws).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LegalModel {
    #[serde(rename = "opt-in")]
    OptIn,
    #[serde(rename = "opt-out")]
    OptOut,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Passed to librdkafka as they are, for every client the enforcer creates
    /// (security.protocol, sasl.*, ssl.*, ...). They win over the enforcer's own settings,
    /// except for the few that the delivery guarantee depends on (see [`PROTECTED_PROPERTIES`]).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Like `properties`, for the consumers only (applied after `properties`).
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, String>,
    /// Like `properties`, for the producer only (applied after `properties`).
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
    /// How long start-up may wait for the cluster's metadata before giving up; see
    /// [`KafkaConfig::startup_timeout`].
    #[serde(default)]
    pub(crate) startup_timeout: Option<Duration>,
    #[serde(default)]
    pub(crate) startup_timeout_secs: Option<u64>,
    /// Values put into properties from `${VAR}` and `*_file`: redacted like secrets.
    #[serde(skip)]
    pub indirect_values: Vec<String>,
}

/// By hand: property values whose keys look secret are never printed.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field(
                "properties",
                &Properties(&self.properties, &self.indirect_values),
            )
            .field(
                "consumer_properties",
                &Properties(&self.consumer_properties, &self.indirect_values),
            )
            .field(
                "producer_properties",
                &Properties(&self.producer_properties, &self.indirect_values),
            )
            .field("startup_timeout", &self.startup_timeout())
            .finish()
    }
}

/// The consumer group shared by every instance of the enforcer.
fn default_group_id() -> String {
    "consent-enforcer".to_owned()
}

/// Long enough for a broker that is still starting, short enough that a wrong address is
/// reported before an operator gives up on the process.
pub const STARTUP_TIMEOUT: DurationKey = DurationKey {
    key: "kafka.startup_timeout",
    alias: "kafka.startup_timeout_secs",
    alias_unit: AliasUnit::Secs,
    default: StdDuration::from_secs(15),
    min: StdDuration::from_secs(1),
};

impl KafkaConfig {
    pub fn startup_timeout(&self) -> DurationSetting {
        STARTUP_TIMEOUT.resolve(self.startup_timeout, self.startup_timeout_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    pub topics: Vec<String>,
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
}

/// Kafka's own default `message.max.bytes`, so that whatever the enforcer accepts it can produce.
const fn default_max_event_bytes() -> usize {
    1_000_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    pub topic: String,
    /// `global`: every instance holds the whole table. `copartitioned`: input and consent
    /// topics are keyed by the same user identifier with equal partition counts, and each
    /// instance holds only the consent partitions matching its input partitions.
    #[serde(default)]
    pub mode: ConsentMode,
    /// `None` when not set (see [`ConsentConfig::when_missing`]).
    #[serde(default, rename = "when_missing")]
    pub(crate) when_missing_set: Option<WhenMissing>,
    /// The jurisdiction of an event whose state and location name none (with
    /// `[[jurisdiction]]`).
    #[serde(default)]
    pub default_jurisdiction: Option<String>,
    /// How long one wait for the consent table to catch up with the consent topic's end
    /// (sampled after a batch of events is read) may last before the batch is set aside and
    /// the wait counted as a timeout. Events are never judged before the table catches up.
    #[serde(default)]
    pub(crate) max_wait: Option<Duration>,
    #[serde(default)]
    pub(crate) max_wait_ms: Option<u64>,
    /// After this long without catching up with the consent topic, the enforcer reports not
    /// ready (it has already stopped judging; it resumes by itself).
    #[serde(default)]
    pub(crate) max_staleness: Option<Duration>,
    #[serde(default)]
    pub(crate) max_staleness_ms: Option<u64>,
    /// How far back earlier consent states are kept, to judge late events by the consent in
    /// force at their own time.
    #[serde(default = "default_history_window")]
    pub history_window: Duration,
    /// At most this many earlier states are kept per user.
    #[serde(default = "default_history_max_changes")]
    pub history_max_changes: usize,
    /// How consent records are encoded.
    #[serde(default)]
    pub format: ConsentFormat,
    /// CMP category IDs (OneTrust's `C0002`, ...) and the category each stands for, applied
    /// to stored states and to event stamps alike.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Write the consent a CMP's preference event carries to the consent topic.
    #[serde(default)]
    pub learn_from_events: bool,
    /// The `track` event names that carry a CMP's new choice.
    #[serde(default = "default_learn_event_names")]
    pub learn_event_names: Vec<String>,
}

fn default_learn_event_names() -> Vec<String> {
    vec!["Segment Consent Preference Updated".to_owned()]
}

fn auto_format() -> ConsentFormat {
    ConsentFormat::Auto
}

/// The encoding of consent records (`consent.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentFormat {
    #[default]
    Json,
    /// `proto/consent.proto`'s `ConsentState`.
    Protobuf,
    /// By the record's `content-type` header (`application/x-protobuf` or
    /// `application/json`), else by its first byte.
    Auto,
}

/// A consent record normally reaches the table within a fetch or two.
pub const MAX_WAIT: DurationKey = DurationKey {
    key: "consent.max_wait",
    alias: "consent.max_wait_ms",
    alias_unit: AliasUnit::Millis,
    default: StdDuration::from_millis(1_000),
    min: StdDuration::from_millis(1),
};

/// Long enough to ride out a leader election, short enough to be noticed.
pub const MAX_STALENESS: DurationKey = DurationKey {
    key: "consent.max_staleness",
    alias: "consent.max_staleness_ms",
    alias_unit: AliasUnit::Millis,
    default: StdDuration::from_millis(30_000),
    min: StdDuration::ZERO,
};

impl ConsentConfig {
    /// `consent.when_missing`, default `deny`.
    pub fn when_missing(&self) -> WhenMissing {
        self.when_missing_set.unwrap_or_default()
    }

    /// How long one wait for the table to catch up may last (`consent.max_wait`).
    pub fn max_wait(&self) -> DurationSetting {
        MAX_WAIT.resolve(self.max_wait, self.max_wait_ms)
    }

    /// How long without catching up before not ready (`consent.max_staleness`).
    pub fn max_staleness(&self) -> DurationSetting {
        MAX_STALENESS.resolve(self.max_staleness, self.max_staleness_ms)
    }
}

/// Late events older than a week are rare; their states are the ones most likely forgotten.
fn default_history_window() -> Duration {
    Duration::from_millis(7 * 24 * 3_600_000)
}

/// A user rarely changes their mind more than a few times within the window (re-sent
/// identical choices do not count).
const fn default_history_max_changes() -> usize {
    8
}

/// Which part of the consent table an instance holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    #[default]
    Global,
    Copartitioned,
}

/// What an event with no consent source at all gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenMissing {
    /// Fail closed: drop with reason `no_consent`.
    #[default]
    Deny,
    /// Deliver, for destinations whose legal basis is not consent (opt-out regimes).
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    pub topic: String,
    /// Whether a dead letter carries the event's value and key.
    #[serde(default)]
    pub payload: DeadLetterPayload,
}

/// What a dead letter keeps of the event. Dead letters are events the enforcer could not
/// judge, of users who may never have consented: `drop` keeps none of their content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterPayload {
    /// The event's key, value and headers, as they came (so it can be replayed).
    #[default]
    Keep,
    /// The event's headers only: a null value and no key, with the value's size.
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP listener for /metrics, /healthz and /readyz.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
        }
    }
}

/// Loopback only: exposing metrics beyond the host is an explicit choice.
fn default_metrics_listen() -> String {
    "127.0.0.1:9464".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Exactly-once only: the producer's `transactional.id`. It must be unique per instance
    /// and stable across its restarts (a restarted instance fences its predecessor's open
    /// transaction). Default: `<group_id>-<hostname>`, right for one instance per host or
    /// per Kubernetes pod.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// Exactly-once only: a transaction is committed once it is this old...
    #[serde(default)]
    pub(crate) transaction_interval: Option<Duration>,
    #[serde(default)]
    pub(crate) transaction_interval_ms: Option<u64>,
    /// ...or holds this many events, whichever comes first.
    #[serde(default = "default_transaction_max_events")]
    pub transaction_max_events: usize,
    /// How often acknowledged progress is committed to the consumer group.
    #[serde(default)]
    pub(crate) commit_interval: Option<Duration>,
    #[serde(default)]
    pub(crate) commit_interval_ms: Option<u64>,
    /// On SIGTERM/SIGINT or a revoked partition: how long in-flight writes may take to be
    /// acknowledged before the enforcer gives up on them (and does not commit past them).
    #[serde(default)]
    pub(crate) drain_timeout: Option<Duration>,
    #[serde(default)]
    pub(crate) drain_timeout_secs: Option<u64>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            guarantee: Guarantee::default(),
            transactional_id: None,
            transaction_interval: None,
            transaction_interval_ms: None,
            transaction_max_events: default_transaction_max_events(),
            commit_interval: None,
            commit_interval_ms: None,
            drain_timeout: None,
            drain_timeout_secs: None,
        }
    }
}

/// The pre-consent hold: events of a user with no consent source at all wait (in a Kafka hold
/// topic) for the user's first choice instead of being dropped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Where held events wait; required when enabled. Not compacted; retention at least
    /// `max_age`.
    #[serde(default)]
    pub topic: Option<String>,
    /// How long an event waits for the user's first choice before it is dropped
    /// (`hold_expired`).
    #[serde(default = "default_hold_max_age")]
    pub max_age: Duration,
    /// Memory for held events waiting in this instance; past it, reading the hold topic
    /// pauses until some are released or expire (they wait in Kafka meanwhile).
    #[serde(default = "default_hold_max_bytes")]
    pub max_bytes: usize,
}

impl Default for HoldConfig {
    fn default() -> Self {
        HoldConfig {
            enabled: false,
            topic: None,
            max_age: default_hold_max_age(),
            max_bytes: default_hold_max_bytes(),
        }
    }
}

/// Most consent banners are answered within seconds or not at all.
fn default_hold_max_age() -> Duration {
    Duration::from_millis(10 * 60_000)
}

/// 64 MiB: tens of thousands of typical events.
const fn default_hold_max_bytes() -> usize {
    64 * 1024 * 1024
}

/// How an event's writes and its input offset are tied together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Offsets committed after the writes are acknowledged; a crash may deliver twice.
    #[default]
    AtLeastOnce,
    /// Writes and offsets commit in one Kafka transaction; `read_committed` consumers see
    /// each delivered event once.
    ExactlyOnce,
}

/// Downstream `read_committed` consumers see records once their transaction commits: this
/// bounds the added latency.
pub const TRANSACTION_INTERVAL: DurationKey = DurationKey {
    key: "delivery.transaction_interval",
    alias: "delivery.transaction_interval_ms",
    alias_unit: AliasUnit::Millis,
    default: StdDuration::from_millis(100),
    min: StdDuration::from_millis(1),
};

/// Bounds the work redone after an aborted transaction.
const fn default_transaction_max_events() -> usize {
    10_000
}

/// One second bounds the redelivery after a crash without a commit per batch.
pub const COMMIT_INTERVAL: DurationKey = DurationKey {
    key: "delivery.commit_interval",
    alias: "delivery.commit_interval_ms",
    alias_unit: AliasUnit::Millis,
    default: StdDuration::from_millis(1_000),
    min: StdDuration::from_millis(1),
};

/// Kubernetes' default termination grace period. At least a second: less would leave no time
/// for any write to be acknowledged (every revoked partition, revocation and shutdown would
/// time out).
pub const DRAIN_TIMEOUT: DurationKey = DurationKey {
    key: "delivery.drain_timeout",
    alias: "delivery.drain_timeout_secs",
    alias_unit: AliasUnit::Secs,
    default: StdDuration::from_secs(30),
    min: StdDuration::from_secs(1),
};

impl DeliveryConfig {
    /// Exactly-once: how old a transaction may grow before it commits.
    pub fn transaction_interval(&self) -> DurationSetting {
        TRANSACTION_INTERVAL.resolve(self.transaction_interval, self.transaction_interval_ms)
    }

    /// At-least-once: how often acknowledged progress is committed.
    pub fn commit_interval(&self) -> DurationSetting {
        COMMIT_INTERVAL.resolve(self.commit_interval, self.commit_interval_ms)
    }

    /// How long a stop or a revocation may wait for writes to be acknowledged.
    pub fn drain_timeout(&self) -> DurationSetting {
        DRAIN_TIMEOUT.resolve(self.drain_timeout, self.drain_timeout_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub name: String,
    /// Keys looked up in the event's `integrations` object; default `[name]`.
    #[serde(default)]
    pub integration_names: Option<Vec<String>>,
    pub topic: String,
    /// Consent categories this destination needs; `[]` marks it strictly necessary.
    pub categories: Vec<String>,
    #[serde(default, rename = "match")]
    pub match_mode: MatchMode,
    /// A messaging channel (`email`, `sms`, `push`, ...): the destination also needs the user
    /// to be `subscribed` on it.
    #[serde(default)]
    pub channel: Option<String>,
    /// Where a delete request (`[privacy] topic`) writes this destination's deletion record.
    #[serde(default)]
    pub deletion_topic: Option<String>,
}

impl DestinationConfig {
    pub fn integration_names(&self) -> Vec<String> {
        self.integration_names
            .clone()
            .unwrap_or_else(|| vec![self.name.clone()])
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// Every category must be granted.
    #[default]
    All,
    /// At least one category must be granted.
    Any,
}

#[cfg(test)]
mod tests;
