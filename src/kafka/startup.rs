//! Start-up's dealings with the cluster: the checks (reachable, authenticated, every topic
//! there with a leader for each partition, co-partitioned counts),
//! and the retrying of transient errors until the one deadline, `kafka.startup_timeout`.
//!
//! A cluster that is still settling (topics just created, a leader being elected, a
//! coordinator loading) is waited for; a lasting error (authentication, authorization, a
//! missing topic) fails start-up at once, with the field or setting to fix.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;

use super::{base, with_user_properties, KafkaContext, Role};
use crate::config::{Config, ConfiguredTopic, TopicRole};

/// The longest single wait for the cluster's metadata, so that an authentication failure,
/// reported apart from the request, ends start-up soon.
const METADATA_SLICE: Duration = Duration::from_secs(1);
/// The shortest time events are served between two tries, enough to empty the queue.
const EVENTS_MIN_WAIT: Duration = Duration::from_millis(10);
/// The shortest wait given to a try, even when the deadline is (almost) reached.
pub(super) const MIN_TRY: Duration = Duration::from_millis(200);
/// The first pause between tries; it doubles up to `MAX_BACKOFF`.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a topic may be absent from the metadata before it counts as missing: a topic
/// created just before start-up can take a moment to reach the broker's metadata.
const MISSING_TOPIC_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not reach Kafka at {servers} within {timeout}: {source}{}", last_error_note(.last_error))]
    Unreachable {
        servers: String,
        /// `kafka.startup_timeout`, as the config gives it (with its key).
        timeout: String,
        source: Box<KafkaError>,
        /// The last error librdkafka reported about the connection (e.g. a TLS handshake).
        last_error: Option<String>,
    },
    #[error("authentication failed at Kafka {servers}: {reason}; check the credentials (sasl.username, sasl.password) or the client certificate in kafka.properties")]
    AuthenticationFailed { servers: String, reason: String },
    #[error("topic {topic:?} ({field}) does not exist; create it before starting the enforcer")]
    MissingTopic { topic: String, field: String },
    #[error("topic {topic:?} ({field}) cannot be used: {reason}")]
    BadTopic {
        topic: String,
        field: String,
        reason: String,
    },
    #[error("topic {topic:?} ({field}) was not ready within {timeout}: {reason}")]
    TopicNotReady {
        topic: String,
        field: String,
        /// `kafka.startup_timeout`, as the config gives it (with its key).
        timeout: String,
        reason: String,
    },
    #[error("consent.mode = \"copartitioned\" needs equal partition counts: {field} = {topic:?} has {partitions}, consent.topic = {consent_topic:?} has {consent_partitions}")]
    NotCopartitioned {
        topic: String,
        field: String,
        partitions: usize,
        consent_topic: String,
        consent_partitions: usize,
    },
    #[error("start-up failed while {step} (transient errors are retried for {timeout}): {source}")]
    Step {
        step: &'static str,
        /// `kafka.startup_timeout`, as the config gives it (with its key).
        timeout: String,
        source: KafkaError,
    },
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
}

fn last_error_note(last_error: &Option<String>) -> String {
    last_error
        .as_deref()
        .map(|error| format!(" (last error from the cluster: {error})"))
        .unwrap_or_default()
}

/// Whether waiting can fix an error from the cluster: a leader being elected, a coordinator
/// loading, a broker not reachable yet, a request that timed out. Anything else (an
/// authentication or authorization failure, a bad request) is lasting.
pub fn is_transient(error: &KafkaError) -> bool {
    if let KafkaError::Transaction(error) = error {
        return error.is_retriable() || is_transient_code(error.code());
    }
    error.rdkafka_error_code().is_some_and(is_transient_code)
}

pub(super) fn is_transient_code(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        code,
        // The cluster is settling: topics just created, a leader or coordinator moving.
        LeaderNotAvailable
            | NotLeaderForPartition
            | PreferredLeaderNotAvailable
            | FencedLeaderEpoch
            | UnknownLeaderEpoch
            | ReplicaNotAvailable
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend
            | OffsetNotAvailable
            | KafkaStorageError
            | NotController
            | CoordinatorLoadInProgress
            | CoordinatorNotAvailable
            | NotCoordinator
            | WaitingForCoordinator
            | ConcurrentTransactions
            // A topic the metadata already shows, not yet known where the request went.
            | UnknownTopicOrPartition
            | UnknownTopic
            | UnknownPartition
            // The network, or a broker not up (yet).
            | RequestTimedOut
            | NetworkException
            | BrokerNotAvailable
            | OperationTimedOut
            | TimedOutQueue
            | BrokerTransportFailure
            | AllBrokersDown
            | Resolve
            | Retry
    )
}

/// Whether librdkafka reports a failed authentication (SASL) with this code.
fn is_authentication_failure(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed
    )
}

/// Tries `attempt` until it succeeds, fails with a lasting error, or `deadline` passes (then
/// the last error is returned). Each try is given the time left (at least `MIN_TRY`).
pub fn retry<T>(
    deadline: Instant,
    step: &'static str,
    mut attempt: impl FnMut(Duration) -> KafkaResult<T>,
) -> KafkaResult<T> {
    let mut backoff = FIRST_BACKOFF;
    let mut reported = false;
    loop {
        let error = match attempt(time_left(deadline).max(MIN_TRY)) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let left = time_left(deadline);
        if !is_transient(&error) || left.is_zero() {
            return Err(error);
        }
        report_transient(step, &error, &mut reported);
        std::thread::sleep(backoff.min(left));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

pub(super) fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Logs the first transient error of a step at info, the others at debug.
fn report_transient(step: &'static str, error: &dyn std::fmt::Display, reported: &mut bool) {
    if *reported {
        tracing::debug!(step, %error, "the cluster is not ready yet; retrying");
    } else {
        *reported = true;
        tracing::info!(
            step,
            %error,
            "the cluster is not ready yet; retrying until kafka.startup_timeout"
        );
    }
}

/// Every topic the config names, with the field that names it; the hold topic last, so that
/// of several missing topics start-up names the one it always named.
pub fn configured_topics(config: &Config) -> Vec<(String, String)> {
    let (hold, others): (Vec<_>, Vec<_>) = config
        .topics()
        .into_iter()
        .partition(|topic| topic.role == TopicRole::Hold);
    others
        .into_iter()
        .chain(hold)
        .map(|topic| (topic.name.to_owned(), topic.field))
        .collect()
}

/// The metadata client's context: librdkafka's logs as usual, and the errors it reports
/// apart from any request (a failed authentication, a TLS handshake) kept for start-up.
struct StartupContext {
    logs: KafkaContext,
    last_error: Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl StartupContext {
    fn last_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.last_error
            .lock()
            .map(|last| last.clone())
            .unwrap_or_default()
    }
}

impl ClientContext for StartupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.logs.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let (Some(code), Ok(mut last)) = (error.rdkafka_error_code(), self.last_error.lock()) {
            // "All brokers down" follows the error that says why.
            if code != RDKafkaErrorCode::AllBrokersDown || last.is_none() {
                *last = Some((code, reason.to_owned()));
            }
        }
        self.logs.error(error, reason);
    }
}

impl ConsumerContext for StartupContext {}

/// Checks, by `deadline`, that the cluster answers and accepts the client's credentials, and
/// that every configured topic exists with a leader for each partition. Returns the partition
/// count of each topic.
pub fn check_topics(
    config: &Config,
    deadline: Instant,
) -> Result<HashMap<String, usize>, StartupError> {
    let mut client = with_user_properties(base(config), config, Role::Admin);
    client
        .set("group.id", &config.kafka.group_id)
        .set("socket.connection.setup.timeout.ms", "5000");
    let consumer: BaseConsumer<StartupContext> = client
        .create_with_context(StartupContext {
            logs: KafkaContext::new(None),
            last_error: Mutex::new(None),
        })
        .map_err(StartupError::Client)?;
    let servers = &config.kafka.bootstrap_servers;
    let timeout = config.kafka.startup_timeout().described();
    let configured = configured_topics(config);
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut reported = false;
    loop {
        let slice = time_left(deadline).clamp(MIN_TRY, METADATA_SLICE);
        let waiting = match consumer.fetch_metadata(None, slice) {
            Ok(metadata) => {
                let missing_is_final = started.elapsed() >= MISSING_TOPIC_GRACE;
                match assess(&configured, &topic_views(&metadata), missing_is_final) {
                    Assessment::Usable(partitions) => return Ok(partitions),
                    Assessment::Lasting(problem) => return Err(problem.into_error(timeout.clone())),
                    Assessment::Settling(problem) => Waiting::Topic(problem),
                }
            }
            Err(source) if !is_transient(&source) => {
                return Err(match source.rdkafka_error_code() {
                    Some(code) if is_authentication_failure(code) => {
                        StartupError::AuthenticationFailed {
                            servers: servers.clone(),
                            reason: source.to_string(),
                        }
                    }
                    _ => StartupError::Step {
                        step: "reading the cluster's metadata",
                        timeout: timeout.clone(),
                        source,
                    },
                });
            }
            Err(error) => Waiting::Cluster(error),
        };
        serve_events(&consumer, backoff.min(time_left(deadline)));
        let last_error = consumer.context().last_error();
        if let Some((code, reason)) = &last_error {
            if is_authentication_failure(*code) {
                return Err(StartupError::AuthenticationFailed {
                    servers: servers.clone(),
                    reason: reason.clone(),
                });
            }
        }
        if time_left(deadline).is_zero() {
            return Err(match waiting {
                Waiting::Topic(problem) => problem.into_error(timeout.clone()),
                Waiting::Cluster(source) => StartupError::Unreachable {
                    servers: servers.clone(),
                    timeout: timeout.clone(),
                    source: Box::new(source),
                    last_error: last_error.map(|(_, reason)| reason),
                },
            });
        }
        let why = match &waiting {
            Waiting::Topic(problem) => format!(
                "topic {:?} ({}): {}",
                problem.topic, problem.field, problem.reason
            ),
            Waiting::Cluster(error) => error.to_string(),
        };
        report_transient("checking the topics", &why, &mut reported);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What the metadata client waits for.
enum Waiting {
    Topic(TopicProblem),
    Cluster(KafkaError),
}

/// Serves what librdkafka queued for the client (its logs, and errors reported apart from any
/// request, into the context) for `wait`, and at least long enough to empty the queue.
fn serve_events(consumer: &BaseConsumer<StartupContext>, wait: Duration) {
    let until = Instant::now() + wait.max(EVENTS_MIN_WAIT);
    loop {
        let left = time_left(until);
        if left.is_zero() {
            return;
        }
        // Returns early on an error event (served into the context all the same).
        let _ = consumer.poll(left);
    }
}

/// What start-up needs to know of one topic in the metadata.
#[derive(Debug, Clone, PartialEq)]
struct TopicView {
    name: String,
    error: Option<RDKafkaErrorCode>,
    /// Each partition's leader (negative: none) and error.
    partitions: Vec<(i32, Option<RDKafkaErrorCode>)>,
}

fn topic_views(metadata: &Metadata) -> Vec<TopicView> {
    metadata
        .topics()
        .iter()
        .map(|topic| TopicView {
            name: topic.name().to_owned(),
            error: topic.error().map(RDKafkaErrorCode::from),
            partitions: topic
                .partitions()
                .iter()
                .map(|p| (p.leader(), p.error().map(RDKafkaErrorCode::from)))
                .collect(),
        })
        .collect()
}

/// Why a configured topic cannot be used yet.
#[derive(Debug, Clone, PartialEq)]
struct TopicProblem {
    topic: String,
    field: String,
    kind: ProblemKind,
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ProblemKind {
    Missing,
    Unusable,
    NotReady,
}

impl TopicProblem {
    fn into_error(self, timeout: String) -> StartupError {
        let TopicProblem {
            topic,
            field,
            kind,
            reason,
        } = self;
        match kind {
            ProblemKind::Missing => StartupError::MissingTopic { topic, field },
            ProblemKind::Unusable => StartupError::BadTopic {
                topic,
                field,
                reason,
            },
            ProblemKind::NotReady => StartupError::TopicNotReady {
                topic,
                field,
                timeout,
                reason,
            },
        }
    }
}

#[derive(Debug, PartialEq)]
enum Assessment {
    /// Every topic is there, each partition with a leader: the partition counts.
    Usable(HashMap<String, usize>),
    /// Waiting may fix it.
    Settling(TopicProblem),
    /// Waiting will not fix it.
    Lasting(TopicProblem),
}

/// Judges the configured topics (name, field) by the metadata. A topic absent from it is
/// settling until `missing_is_final`; a lasting problem of any topic wins over a settling one.
fn assess(
    configured: &[(String, String)],
    found: &[TopicView],
    missing_is_final: bool,
) -> Assessment {
    let mut partitions = HashMap::new();
    let mut settling = None;
    for (topic, field) in configured {
        let problem = |kind, reason: String| TopicProblem {
            topic: topic.clone(),
            field: field.clone(),
            kind,
            reason,
        };
        let view = found
            .iter()
            .find(|view| &view.name == topic)
            .filter(|view| view.error != Some(RDKafkaErrorCode::UnknownTopicOrPartition));
        let Some(view) = view else {
            let missing = problem(ProblemKind::Missing, "UnknownTopicOrPartition".to_owned());
            if missing_is_final {
                return Assessment::Lasting(missing);
            }
            settling.get_or_insert(missing);
            continue;
        };
        let partition_error = view
            .partitions
            .iter()
            .find_map(|(leader, error)| match error {
                // Some follower is down: the partition is served by its leader all the same.
                Some(RDKafkaErrorCode::ReplicaNotAvailable) | None if *leader >= 0 => None,
                Some(code) => Some(*code),
                None => Some(RDKafkaErrorCode::LeaderNotAvailable),
            });
        match view.error.or(partition_error) {
            None if view.partitions.is_empty() => {
                return Assessment::Lasting(problem(
                    ProblemKind::Unusable,
                    "it has no partitions".to_owned(),
                ))
            }
            None => {
                partitions.insert(topic.clone(), view.partitions.len());
            }
            Some(code) if is_transient_code(code) => {
                settling.get_or_insert(problem(ProblemKind::NotReady, format!("{code:?}")));
            }
            Some(code) => {
                return Assessment::Lasting(problem(ProblemKind::Unusable, format!("{code:?}")))
            }
        }
    }
    match settling {
        Some(problem) => Assessment::Settling(problem),
        None => Assessment::Usable(partitions),
    }
}

/// In co-partitioned mode, every input topic (and the hold topic) must have as many
/// partitions as the consent topic, so that partition `p` of each holds the same users.
pub fn check_copartitioned(
    config: &Config,
    partitions: &HashMap<String, usize>,
) -> Result<(), StartupError> {
    let consent = partitions.get(&config.consent.topic).copied().unwrap_or(0);
    let inputs = config.topics().into_iter().filter(|t| t.read_by_group());
    for ConfiguredTopic {
        name: topic, field, ..
    } in inputs
    {
        let topic = topic.to_owned();
        let count = partitions.get(&topic).copied().unwrap_or(0);
        if count != consent {
            return Err(StartupError::NotCopartitioned {
                topic,
                field,
                partitions: count,
                consent_topic: config.consent.topic.clone(),
                consent_partitions: consent,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
