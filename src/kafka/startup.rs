//! Start-up's checks of the cluster: reachable, every topic there, co-partitioned counts,
//! consent topic compacted.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use super::{base, with_user_properties, Role};
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not reach Kafka at {servers} within {secs} s: {source}")]
    Unreachable {
        servers: String,
        secs: u64,
        source: KafkaError,
    },
    #[error("topic {topic:?} ({field}) does not exist; create it before starting the enforcer")]
    MissingTopic { topic: String, field: String },
    #[error("topic {topic:?} ({field}) cannot be used: {reason}")]
    BadTopic {
        topic: String,
        field: String,
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
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
}

/// Every topic the config names, with the field that names it.
pub fn configured_topics(config: &Config) -> Vec<(String, String)> {
    let mut topics: Vec<(String, String)> = config
        .input
        .topics
        .iter()
        .enumerate()
        .map(|(i, topic)| (topic.clone(), format!("input.topics[{i}]")))
        .collect();
    topics.push((config.consent.topic.clone(), "consent.topic".to_owned()));
    topics.push((
        config.dead_letter.topic.clone(),
        "dead_letter.topic".to_owned(),
    ));
    for (i, dest) in config.destinations.iter().enumerate() {
        topics.push((dest.topic.clone(), format!("destination[{i}].topic")));
    }
    if let (true, Some(topic)) = (config.hold.enabled, &config.hold.topic) {
        topics.push((topic.clone(), "hold.topic".to_owned()));
    }
    topics
}

/// Checks, with the clients' `kafka.properties` (a secured cluster answers nothing else),
/// that the cluster answers within `kafka.startup_timeout_secs` and that every configured
/// topic exists. Returns the partition count of each topic.
pub fn check_topics(config: &Config) -> Result<HashMap<String, usize>, StartupError> {
    let consumer: BaseConsumer = with_user_properties(base(config), config, Role::Admin)
        .set("group.id", &config.kafka.group_id)
        .set("socket.connection.setup.timeout.ms", "5000")
        .create()
        .map_err(StartupError::Client)?;
    let secs = config.kafka.startup_timeout_secs;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(secs))
        .map_err(|source| StartupError::Unreachable {
            servers: config.kafka.bootstrap_servers.clone(),
            secs,
            source,
        })?;
    let mut partitions = HashMap::new();
    for (topic, field) in configured_topics(config) {
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            None => return Err(StartupError::MissingTopic { topic, field }),
            Some(t) if t.error().is_some() || t.partitions().is_empty() => {
                let reason = t
                    .error()
                    .map(|e| format!("{:?}", rdkafka::types::RDKafkaErrorCode::from(e)))
                    .unwrap_or_else(|| "it has no partitions".to_owned());
                let error = if reason.contains("UnknownTopicOrPartition") {
                    StartupError::MissingTopic { topic, field }
                } else {
                    StartupError::BadTopic {
                        topic,
                        field,
                        reason,
                    }
                };
                return Err(error);
            }
            Some(t) => {
                partitions.insert(topic, t.partitions().len());
            }
        }
    }
    Ok(partitions)
}

/// In co-partitioned mode, every input topic (and the hold topic) must have as many
/// partitions as the consent topic, so that partition `p` of each holds the same users.
pub fn check_copartitioned(
    config: &Config,
    partitions: &HashMap<String, usize>,
) -> Result<(), StartupError> {
    let consent = partitions.get(&config.consent.topic).copied().unwrap_or(0);
    let mut inputs: Vec<(String, String)> = config
        .input
        .topics
        .iter()
        .enumerate()
        .map(|(i, topic)| (topic.clone(), format!("input.topics[{i}]")))
        .collect();
    if let (true, Some(topic)) = (config.hold.enabled, &config.hold.topic) {
        inputs.push((topic.clone(), "hold.topic".to_owned()));
    }
    for (topic, field) in inputs {
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

/// Warns (does not fail) when the consent topic is not compacted: without compaction the
/// table is still correct, but start-up reads the topic's whole history.
pub async fn warn_if_consent_topic_not_compacted(config: &Config) {
    let admin: AdminClient<DefaultClientContext> =
        match with_user_properties(base(config), config, Role::Admin).create() {
            Ok(admin) => admin,
            Err(err) => {
                tracing::warn!(%err, "cannot check the consent topic's cleanup.policy");
                return;
            }
        };
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(config.kafka.startup_timeout_secs)));
    let resource = ResourceSpecifier::Topic(&config.consent.topic);
    let policy = match admin.describe_configs([&resource], &options).await {
        Ok(mut results) => match results.pop() {
            Some(Ok(resource)) => resource
                .get("cleanup.policy")
                .and_then(|entry| entry.value.clone()),
            // A missing topic is reported by the start-up check, with its field.
            Some(Err(_)) | None => return,
        },
        Err(err) => {
            tracing::warn!(%err, "cannot check the consent topic's cleanup.policy");
            return;
        }
    };
    match policy {
        Some(policy) if policy.split(',').any(|p| p.trim() == "compact") => {}
        other => tracing::warn!(
            topic = %config.consent.topic,
            cleanup_policy = other.as_deref().unwrap_or("unknown"),
            "consent topic is not compacted: start-up will read its whole history, and \
             retention may delete states still in force; set cleanup.policy=compact"
        ),
    }
}
