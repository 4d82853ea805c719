//! The TOML configuration: its shape, its defaults, and the cross-field checks done once at load.
//!
//! Every error is one line that names the offending field, so `check-config` and a failed
//! start tell the operator exactly what to fix.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::secrets::{self, is_secret_key, Properties, REDACTED};

/// Environment variable that overrides `kafka.bootstrap_servers`.
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// Categories are interned into a 64-bit set; see [`crate::vocabulary`].
pub const MAX_CATEGORIES: usize = 64;
/// Integration names are interned into a 128-bit set.
pub const MAX_INTEGRATION_NAMES: usize = 128;
/// Destinations are numbered in a byte of the delivery tag; see [`crate::delivery::tag`].
pub const MAX_DESTINATIONS: usize = 200;

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
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Passed to librdkafka as they are, for every client the enforcer creates
    /// (security.protocol, sasl.*, ssl.*, ...). They win over the enforcer's own settings,
    /// except for the few that the delivery guarantee depends on (see `kafka::protected`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Like `properties`, for the consumers only (applied after `properties`).
    #[serde(default)]
    pub consumer_properties: BTreeMap<String, String>,
    /// Like `properties`, for the producer only (applied after `properties`).
    #[serde(default)]
    pub producer_properties: BTreeMap<String, String>,
    /// How long start-up may wait for the cluster's metadata before giving up.
    #[serde(default = "default_startup_timeout_secs")]
    pub startup_timeout_secs: u64,
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
            .field("startup_timeout_secs", &self.startup_timeout_secs)
            .finish()
    }
}

/// The consumer group shared by every instance of the enforcer.
fn default_group_id() -> String {
    "consent-enforcer".to_owned()
}

/// Long enough for a broker that is still starting, short enough that a wrong address is
/// reported before an operator gives up on the process.
const fn default_startup_timeout_secs() -> u64 {
    15
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
    #[serde(default)]
    pub when_missing: WhenMissing,
    /// How long one wait for the consent table to catch up with the consent topic's end
    /// (sampled after a batch of events is read) may last before the batch is set aside and
    /// the wait counted as a timeout. Events are never judged before the table catches up.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// After this long without catching up with the consent topic, the enforcer reports not
    /// ready (it has already stopped judging; it resumes by itself).
    #[serde(default = "default_max_staleness_ms")]
    pub max_staleness_ms: u64,
    /// How far back earlier consent states are kept, to judge late events by the consent in
    /// force at their own time.
    #[serde(default = "default_history_window")]
    pub history_window: Duration,
    /// At most this many earlier states are kept per user.
    #[serde(default = "default_history_max_changes")]
    pub history_max_changes: usize,
}

/// A consent record normally reaches the table within a fetch or two.
const fn default_max_wait_ms() -> u64 {
    1_000
}

/// Long enough to ride out a leader election, short enough to be noticed.
const fn default_max_staleness_ms() -> u64 {
    30_000
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

/// A duration written with its unit: `500ms`, `30s`, `10m`, `2h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const fn from_millis(ms: u64) -> Duration {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }

    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| {
            format!("{text:?} is not a duration like \"500ms\", \"30s\", \"10m\", \"2h\" or \"7d\"")
        })?;
        let ms_per_unit = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                "{text:?} has no unit; write it like \"500ms\", \"30s\", \"10m\", \"2h\" or \"7d\""
            ))
            }
        };
        number
            .checked_mul(ms_per_unit)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{text:?} is too long"))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
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
    #[serde(default = "default_transaction_interval_ms")]
    pub transaction_interval_ms: u64,
    /// ...or holds this many events, whichever comes first.
    #[serde(default = "default_transaction_max_events")]
    pub transaction_max_events: usize,
    /// How often acknowledged progress is committed to the consumer group.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// On SIGTERM/SIGINT or a revoked partition: how long in-flight writes may take to be
    /// acknowledged before the enforcer gives up on them (and does not commit past them).
    #[serde(default = "default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            guarantee: Guarantee::default(),
            transactional_id: None,
            transaction_interval_ms: default_transaction_interval_ms(),
            transaction_max_events: default_transaction_max_events(),
            commit_interval_ms: default_commit_interval_ms(),
            drain_timeout_secs: default_drain_timeout_secs(),
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
const fn default_transaction_interval_ms() -> u64 {
    100
}

/// Bounds the work redone after an aborted transaction.
const fn default_transaction_max_events() -> usize {
    10_000
}

/// One second bounds the redelivery after a crash without a commit per batch.
const fn default_commit_interval_ms() -> u64 {
    1_000
}

/// Kubernetes' default termination grace period.
const fn default_drain_timeout_secs() -> u64 {
    30
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}{location}: {message}")]
    Parse {
        path: String,
        location: String,
        message: String,
    },
    #[error("invalid config: {field}: {message}")]
    Invalid { field: String, message: String },
    /// librdkafka refused a property (its value is never shown).
    #[error("invalid config: kafka property {key:?} refused by librdkafka: {reason}")]
    Property { key: String, reason: String },
    /// librdkafka refused to create a client with the configured properties.
    #[error("invalid config: librdkafka refused the kafka properties: {reason}")]
    Client { reason: String },
}

/// True if the line holding byte `at` sets a key that looks secret (its value must not
/// appear in an error).
fn on_secret_line(text: &str, at: usize) -> bool {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[start..end];
    line.split('=')
        .next()
        .map(|key| key.trim().trim_matches('"').trim_matches('\''))
        .is_some_and(is_secret_key)
}

/// A serde/toml message with the values it quotes (between backticks) taken out.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { REDACTED } else { part });
    }
    out
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads, parses and validates a config file, applying `KAFKA_BOOTSTRAP_SERVERS` if set.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        // Secrets written out in the file, before `${VAR}` and `*_file` are resolved.
        let written_out: Vec<String> = [
            &config.kafka.properties,
            &config.kafka.consumer_properties,
            &config.kafka.producer_properties,
        ]
        .into_iter()
        .flat_map(|table| table.iter())
        .filter(|(key, value)| {
            is_secret_key(key) && !key.ends_with(secrets::FILE_SUFFIX) && !value.contains("${")
        })
        .map(|(key, _)| key.clone())
        .collect();
        let env = |name: &str| std::env::var(name).ok();
        let kafka = &mut config.kafka;
        let mut indirect = secrets::resolve(&mut kafka.properties, "properties", &env)?;
        indirect.extend(secrets::resolve(
            &mut kafka.consumer_properties,
            "consumer_properties",
            &env,
        )?);
        indirect.extend(secrets::resolve(
            &mut kafka.producer_properties,
            "producer_properties",
            &env,
        )?);
        kafka.indirect_values = indirect;
        if let Some(warning) = secrets::exposed_secret_warning(path, &written_out) {
            tracing::warn!("{warning}");
        }
        if let Ok(servers) = std::env::var(BOOTSTRAP_ENV) {
            config.kafka.bootstrap_servers = servers;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|err| {
            let location = err
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            // One line, whatever the text quotes (a key may hold a carriage return).
            let mut message: String = err
                .message()
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
                .trim()
                .to_owned();
            // Type and value errors quote the value; on a secret key's line, or inside an
            // inline table (where the key is not at the start of the line), it is taken out.
            let quotes_a_value =
                message.starts_with("invalid type") || message.starts_with("invalid value");
            if quotes_a_value
                || err
                    .span()
                    .is_some_and(|span| on_secret_line(text, span.start))
            {
                message = without_quoted_values(&message);
            }
            ConfigError::Parse {
                path: origin.to_owned(),
                location,
                message,
            }
        })
    }

    /// The cross-field checks. Each error names the field and the value at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap_servers", "must not be empty"));
        }
        if self.kafka.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        for (table, properties) in [
            ("properties", &self.kafka.properties),
            ("consumer_properties", &self.kafka.consumer_properties),
            ("producer_properties", &self.kafka.producer_properties),
        ] {
            for key in properties.keys() {
                if crate::kafka::PROTECTED_PROPERTIES.contains(&key.as_str()) {
                    return Err(invalid(
                        format!("kafka.{table}.{key:?}"),
                        "is set by the enforcer itself: its delivery guarantee depends on it",
                    ));
                }
            }
        }
        if self.kafka.startup_timeout_secs == 0 {
            return Err(invalid("kafka.startup_timeout_secs", "must be at least 1"));
        }
        if self.input.topics.is_empty() {
            return Err(invalid("input.topics", "must name at least one topic"));
        }
        if self.input.topics.len() > 255 {
            return Err(invalid("input.topics", "at most 255 input topics"));
        }
        if self.input.max_event_bytes == 0 {
            return Err(invalid("input.max_event_bytes", "must be at least 1"));
        }
        if self.consent.max_wait_ms == 0 {
            return Err(invalid("consent.max_wait_ms", "must be at least 1"));
        }
        if self.consent.max_staleness_ms < self.consent.max_wait_ms {
            return Err(invalid(
                "consent.max_staleness_ms",
                format!(
                    "{} is shorter than consent.max_wait_ms = {}",
                    self.consent.max_staleness_ms, self.consent.max_wait_ms
                ),
            ));
        }
        if self
            .delivery
            .transactional_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(invalid("delivery.transactional_id", "must not be empty"));
        }
        if self.delivery.transactional_id.is_some()
            && self.delivery.guarantee != Guarantee::ExactlyOnce
        {
            return Err(invalid(
                "delivery.transactional_id",
                "is only used with delivery.guarantee = \"exactly_once\"",
            ));
        }
        if self.delivery.transaction_interval_ms == 0 || self.delivery.transaction_max_events == 0 {
            return Err(invalid(
                "delivery.transaction_interval_ms",
                "transaction_interval_ms and transaction_max_events must be at least 1",
            ));
        }
        if self.hold.enabled {
            if self.hold.topic.is_none() {
                return Err(invalid(
                    "hold.topic",
                    "is required when hold.enabled = true",
                ));
            }
            if self.consent.when_missing != WhenMissing::Deny {
                return Err(invalid(
                    "hold.enabled",
                    "holds events that consent.when_missing = \"deny\" would drop; with \"allow\" nothing is held",
                ));
            }
            if self.hold.max_age.as_millis() < 1_000 {
                return Err(invalid("hold.max_age", "must be at least 1s"));
            }
            if self.hold.max_bytes < 1_024 {
                return Err(invalid("hold.max_bytes", "must be at least 1024"));
            }
        }
        if self.delivery.drain_timeout_secs == 0 {
            // Zero would leave no time for any write to be acknowledged: every revoked
            // partition, revocation and shutdown would time out.
            return Err(invalid("delivery.drain_timeout_secs", "must be at least 1"));
        }
        if self.delivery.commit_interval_ms == 0 {
            return Err(invalid("delivery.commit_interval_ms", "must be at least 1"));
        }
        if self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "metrics.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464",
                    self.metrics.listen
                ),
            ));
        }
        if self.destinations.is_empty() {
            return Err(invalid(
                "destination",
                "at least one [[destination]] is needed",
            ));
        }
        if self.destinations.len() > MAX_DESTINATIONS {
            return Err(invalid(
                "destination",
                format!("at most {MAX_DESTINATIONS} destinations"),
            ));
        }
        self.check_topic_roles()?;
        self.check_destinations()
    }

    /// A topic may serve one role only: reading our own output would loop or leak.
    fn check_topic_roles(&self) -> Result<(), ConfigError> {
        let mut claims: Vec<(&str, String)> = Vec::new();
        for (i, topic) in self.input.topics.iter().enumerate() {
            claims.push((topic, format!("input.topics[{i}]")));
        }
        claims.push((&self.consent.topic, "consent.topic".to_owned()));
        claims.push((&self.dead_letter.topic, "dead_letter.topic".to_owned()));
        if let (true, Some(topic)) = (self.hold.enabled, &self.hold.topic) {
            claims.push((topic, "hold.topic".to_owned()));
        }
        for (i, dest) in self.destinations.iter().enumerate() {
            claims.push((&dest.topic, format!("destination[{i}].topic")));
        }
        let mut roles: HashMap<&str, &str> = HashMap::new();
        for (topic, field) in &claims {
            if topic.trim().is_empty() {
                return Err(invalid(field.as_str(), "topic name must not be empty"));
            }
            if let Some(first) = roles.insert(topic, field) {
                return Err(invalid(
                    field.as_str(),
                    format!("topic {topic:?} is already used as {first}"),
                ));
            }
        }
        Ok(())
    }

    fn check_destinations(&self) -> Result<(), ConfigError> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut categories: Vec<&str> = Vec::new();
        let mut integration_names: Vec<String> = Vec::new();
        for (i, dest) in self.destinations.iter().enumerate() {
            if dest.name.trim().is_empty() {
                return Err(invalid(
                    format!("destination[{i}].name"),
                    "must not be empty",
                ));
            }
            if dest.name.contains(',') {
                // The hold topic's header lists destination names separated by commas.
                return Err(invalid(
                    format!("destination[{i}].name"),
                    format!("{:?} must not contain a comma", dest.name),
                ));
            }
            if let Some(first) = names.insert(&dest.name, i) {
                return Err(invalid(
                    format!("destination[{i}].name"),
                    format!(
                        "{:?} is already the name of destination[{first}]",
                        dest.name
                    ),
                ));
            }
            for (j, category) in dest.categories.iter().enumerate() {
                if category.is_empty() {
                    return Err(invalid(
                        format!("destination[{i}].categories[{j}]"),
                        "must not be empty",
                    ));
                }
                if !categories.contains(&category.as_str()) {
                    categories.push(category);
                }
            }
            if let Some(list) = &dest.integration_names {
                if list.is_empty() {
                    return Err(invalid(
                        format!("destination[{i}].integration_names"),
                        "must name at least one integration (omit it to use the destination name)",
                    ));
                }
            }
            for name in dest.integration_names() {
                if name.is_empty() {
                    return Err(invalid(
                        format!("destination[{i}].integration_names"),
                        "names must not be empty",
                    ));
                }
                if name == "All" {
                    return Err(invalid(
                        format!("destination[{i}].integration_names"),
                        "\"All\" is the catch-all key of `integrations`, not an integration name",
                    ));
                }
                if !integration_names.contains(&name) {
                    integration_names.push(name);
                }
            }
        }
        if categories.len() > MAX_CATEGORIES {
            return Err(invalid(
                "destination.categories",
                format!(
                    "{} distinct categories; at most {MAX_CATEGORIES} are supported",
                    categories.len()
                ),
            ));
        }
        if integration_names.len() > MAX_INTEGRATION_NAMES {
            return Err(invalid(
                "destination.integration_names",
                format!(
                    "{} distinct names; at most {MAX_INTEGRATION_NAMES} are supported",
                    integration_names.len()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
[input]
topics = ["events.raw"]
[consent]
topic = "consent.states"
[dead_letter]
topic = "events.dead-letter"
[[destination]]
name = "amplitude"
topic = "dest.amplitude"
categories = ["analytics"]
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let config = Config::parse(text, "test.toml")?;
        config.validate()?;
        Ok(config)
    }

    fn error_of(text: &str) -> String {
        match load(text) {
            Ok(_) => panic!("config should have been rejected"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(config.kafka.group_id, "consent-enforcer");
        assert_eq!(config.input.max_event_bytes, 1_000_000);
        assert_eq!(config.consent.when_missing, WhenMissing::Deny);
        assert_eq!(config.metrics.listen, "127.0.0.1:9464");
        assert_eq!(config.delivery.drain_timeout_secs, 30);
        assert_eq!(config.delivery.guarantee, Guarantee::AtLeastOnce);
        let dest = &config.destinations[0];
        assert_eq!(dest.match_mode, MatchMode::All);
        assert_eq!(dest.integration_names(), vec!["amplitude".to_owned()]);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("[input]", "[input]\nbogus_key = 1");
        let err = error_of(&text);
        assert!(err.contains("bogus_key"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn destination_without_categories_is_rejected() {
        let err = error_of(&MINIMAL.replace("categories = [\"analytics\"]", ""));
        assert!(err.contains("categories"), "{err}");
    }

    #[test]
    fn duplicate_destination_name_is_rejected() {
        let text = format!(
            "{MINIMAL}\n[[destination]]\nname = \"amplitude\"\ntopic = \"dest.other\"\ncategories = []\n"
        );
        let err = error_of(&text);
        assert!(err.contains("destination[1].name"), "{err}");
    }

    #[test]
    fn destination_name_with_a_comma_is_rejected() {
        let err = error_of(&MINIMAL.replace("name = \"amplitude\"", "name = \"amp,litude\""));
        assert!(err.contains("destination[0].name"), "{err}");
        assert!(err.contains("comma"), "{err}");
    }

    #[test]
    fn zero_drain_timeout_is_rejected() {
        let err = error_of(&format!("{MINIMAL}\n[delivery]\ndrain_timeout_secs = 0\n"));
        assert!(err.contains("delivery.drain_timeout_secs"), "{err}");
    }

    #[test]
    fn duplicate_destination_topic_is_rejected() {
        let text = format!(
            "{MINIMAL}\n[[destination]]\nname = \"other\"\ntopic = \"dest.amplitude\"\ncategories = []\n"
        );
        let err = error_of(&text);
        assert!(err.contains("destination[1].topic"), "{err}");
        assert!(err.contains("destination[0].topic"), "{err}");
    }

    #[test]
    fn topic_in_two_roles_is_rejected() {
        let err =
            error_of(&MINIMAL.replace("topic = \"events.dead-letter\"", "topic = \"events.raw\""));
        assert!(err.contains("dead_letter.topic"), "{err}");
        assert!(err.contains("input.topics[0]"), "{err}");
    }

    #[test]
    fn bad_enum_value_is_named() {
        let err = error_of(&MINIMAL.replace(
            "topic = \"consent.states\"",
            "topic = \"consent.states\"\nwhen_missing = \"maybe\"",
        ));
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn bad_listen_address_is_named() {
        let err = error_of(&format!("{MINIMAL}\n[metrics]\nlisten = \"nowhere\"\n"));
        assert!(err.contains("metrics.listen"), "{err}");
    }

    #[test]
    fn guarantee_critical_properties_cannot_be_overridden() {
        let err = error_of(&MINIMAL.replace(
            "bootstrap_servers = \"127.0.0.1:9092\"",
            "bootstrap_servers = \"127.0.0.1:9092\"\n[kafka.properties]\n\"enable.auto.commit\" = \"true\"",
        ));
        assert!(err.contains("enable.auto.commit"), "{err}");
    }

    #[test]
    fn durations_carry_their_unit() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("10m", 600_000),
            ("2h", 7_200_000),
            ("7d", 604_800_000),
        ] {
            assert_eq!(text.parse::<Duration>().unwrap().as_millis(), ms, "{text}");
        }
        for bad in ["10", "m", "10 weeks", "-1s", ""] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
        let err = error_of(&MINIMAL.replace(
            "topic = \"consent.states\"",
            "topic = \"consent.states\"\nhistory_window = \"7\"",
        ));
        assert!(
            err.contains("history_window") || err.contains("unit"),
            "{err}"
        );
    }

    #[test]
    fn staleness_shorter_than_wait_names_both_fields() {
        let err = error_of(&MINIMAL.replace(
            "topic = \"consent.states\"",
            "topic = \"consent.states\"\nmax_wait_ms = 5000\nmax_staleness_ms = 1000",
        ));
        assert!(
            err.contains("consent.max_staleness_ms") && err.contains("consent.max_wait_ms"),
            "{err}"
        );
    }

    #[test]
    fn all_is_not_an_integration_name() {
        let err = error_of(&MINIMAL.replace(
            "name = \"amplitude\"",
            "name = \"amplitude\"\nintegration_names = [\"All\"]",
        ));
        assert!(err.contains("integration_names"), "{err}");
    }
}
