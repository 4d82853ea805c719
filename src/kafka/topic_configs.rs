//! Warnings (never failures) about topic settings that the enforcer works with but that
//! weaken what it can promise: a consent topic that is not compacted, and input topics whose
//! record timestamps are the producer's (`CreateTime`) rather than the broker's.

use std::time::Instant;

use rdkafka::admin::{AdminClient, AdminOptions, ConfigResource, ResourceSpecifier};
use rdkafka::error::KafkaError;

use super::startup::{is_transient_code, time_left, FIRST_BACKOFF, MAX_BACKOFF, MIN_TRY};
use super::{base, is_transient, with_user_properties, KafkaContext, Role};
use crate::config::{Config, ConfiguredTopic, TopicRole};

/// Reads the consent and input topics' configs and warns about what weakens the enforcer's
/// guarantees. Transient errors are retried until `kafka.startup_timeout_secs`; a topic that
/// cannot be described is skipped (a missing one is reported by the start-up check).
pub async fn warn_about_topic_configs(config: &Config) {
    let deadline = Instant::now() + config.kafka.startup_timeout().value;
    let admin: AdminClient<KafkaContext> =
        match with_user_properties(base(config), config, Role::Admin)
            .create_with_context(KafkaContext::new(None))
        {
            Ok(admin) => admin,
            Err(err) => {
                tracing::warn!(%err, "cannot check the topics' settings");
                return;
            }
        };
    let topics: Vec<ConfiguredTopic<'_>> = config
        .topics()
        .into_iter()
        .filter(|t| {
            matches!(
                t.role,
                TopicRole::Consent | TopicRole::Privacy | TopicRole::Input | TopicRole::Audit
            )
        })
        .collect();
    let resources: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|t| ResourceSpecifier::Topic(t.name))
        .collect();
    let mut backoff = FIRST_BACKOFF;
    let described = loop {
        let options = AdminOptions::new().request_timeout(Some(time_left(deadline).max(MIN_TRY)));
        let error = match admin.describe_configs(&resources, &options).await {
            Ok(results) => {
                let transient = results.iter().find_map(|r| match r {
                    Err(code) if is_transient_code(*code) => Some(KafkaError::AdminOp(*code)),
                    _ => None,
                });
                match transient {
                    None => break results,
                    Some(error) => error,
                }
            }
            Err(error) => error,
        };
        let transient = is_transient(&error)
            || matches!(&error, KafkaError::AdminOp(code) if is_transient_code(*code));
        let left = time_left(deadline);
        if transient && !left.is_zero() {
            tokio::time::sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        tracing::warn!(%error, "cannot check the topics' settings");
        return;
    };
    for (i, result) in described.iter().enumerate() {
        let Some(ConfiguredTopic {
            name: topic, role, ..
        }) = topics.get(i)
        else {
            continue;
        };
        let resource = match result {
            Ok(resource) => resource,
            Err(code) => {
                // A missing topic is reported by the start-up check; anything else (a missing
                // DescribeConfigs permission) means the check did not run: say so.
                if *code != rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                    tracing::warn!(topic, error = %code, "cannot check the topic's settings");
                }
                continue;
            }
        };
        if *role == TopicRole::Consent {
            warn_if_not_compacted(topic, resource, "consent topic");
        } else if *role == TopicRole::Privacy {
            warn_if_not_compacted(topic, resource, "privacy topic");
        } else if *role == TopicRole::Audit {
            warn_if_compacted(topic, resource);
        } else {
            warn_if_create_time(topic, resource);
        }
    }
    tracing::debug!(topics = topics.len(), "topic settings checked");
}

fn value<'r>(resource: &'r ConfigResource, name: &str) -> Option<&'r str> {
    resource.get(name).and_then(|entry| entry.value.as_deref())
}

/// Without compaction the table is still correct, but start-up reads the topic's whole
/// history, and retention may delete states still in force.
fn warn_if_not_compacted(topic: &str, resource: &ConfigResource, what: &str) {
    let policy = value(resource, "cleanup.policy");
    if !policy.is_some_and(|p| p.split(',').any(|p| p.trim() == "compact")) {
        tracing::warn!(
            topic,
            cleanup_policy = policy.unwrap_or("unknown"),
            "{what} is not compacted: start-up will read its whole history, and retention \
             may delete states still in force; set cleanup.policy=compact"
        );
    }
}

/// The audit log is a history: compaction would keep only each user's last change.
fn warn_if_compacted(topic: &str, resource: &ConfigResource) {
    let policy = value(resource, "cleanup.policy");
    if policy.is_some_and(|p| p.split(',').any(|p| p.trim() == "compact")) {
        tracing::warn!(
            topic,
            "audit topic is compacted: compaction keeps only the last change of each user; \
             set cleanup.policy=delete with the retention your records must be kept for"
        );
    }
}

/// With `CreateTime` the record timestamp is whatever the producer set: a collector that
/// copies the client's clock into it can date an event before a revocation it came after.
fn warn_if_create_time(topic: &str, resource: &ConfigResource) {
    let timestamp_type = value(resource, "message.timestamp.type");
    if timestamp_type.is_none() {
        tracing::warn!(
            topic,
            "cannot read the input topic's message.timestamp.type"
        );
    } else if timestamp_type != Some("LogAppendTime") {
        tracing::warn!(
            topic,
            timestamp_type = timestamp_type.unwrap_or("unknown"),
            "input topic's record timestamps are set by its producers (CreateTime): an event's \
             time is capped at its record timestamp, so a producer that copies the client's \
             clock into it can date an event before a revocation it came after; set \
             message.timestamp.type=LogAppendTime on the topic"
        );
    }
}
