//! Every topic the config names, with its role and the field that names it: the one list
//! that start-up checks, topic-role checks, topic-setting warnings and the pipeline use.

use super::Config;

/// What the enforcer does with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    /// Read by the group: events to judge (`input.topics`).
    Input,
    /// Read whole by every instance (or per partition in co-partitioned mode).
    Consent,
    /// Read whole by every instance (`privacy.topic`).
    Privacy,
    DeadLetter,
    /// `[[destination]]` number `i`.
    Destination(usize),
    /// Written and read back by the group (`hold.topic`, when the hold is enabled).
    Hold,
    /// `[[destination]]` number `i`'s `deletion_topic`.
    Deletion(usize),
    /// Written, never read (`audit.topic`).
    Audit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredTopic<'c> {
    pub name: &'c str,
    /// The field that names it, e.g. `input.topics[0]`, for messages.
    pub field: String,
    pub role: TopicRole,
}

impl ConfiguredTopic<'_> {
    /// Read by the event consumer group: the input topics and the hold topic.
    pub fn read_by_group(&self) -> bool {
        matches!(self.role, TopicRole::Input | TopicRole::Hold)
    }
}

impl Config {
    /// Every topic the config names, in this order: input topics, consent, privacy, dead letter,
    /// hold (if enabled), destinations. A disabled hold's topic is not named.
    pub fn topics(&self) -> Vec<ConfiguredTopic<'_>> {
        let mut topics: Vec<ConfiguredTopic<'_>> = self
            .input
            .topics
            .iter()
            .enumerate()
            .map(|(i, name)| ConfiguredTopic {
                name,
                field: format!("input.topics[{i}]"),
                role: TopicRole::Input,
            })
            .collect();
        topics.push(ConfiguredTopic {
            name: &self.consent.topic,
            field: "consent.topic".to_owned(),
            role: TopicRole::Consent,
        });
        if let Some(privacy) = &self.privacy {
            topics.push(ConfiguredTopic {
                name: &privacy.topic,
                field: "privacy.topic".to_owned(),
                role: TopicRole::Privacy,
            });
        }
        topics.push(ConfiguredTopic {
            name: &self.dead_letter.topic,
            field: "dead_letter.topic".to_owned(),
            role: TopicRole::DeadLetter,
        });
        if let Some(hold) = self.hold_topic() {
            topics.push(ConfiguredTopic {
                name: hold,
                field: "hold.topic".to_owned(),
                role: TopicRole::Hold,
            });
        }
        for (i, destination) in self.destinations.iter().enumerate() {
            topics.push(ConfiguredTopic {
                name: &destination.topic,
                field: format!("destination[{i}].topic"),
                role: TopicRole::Destination(i),
            });
        }
        for (i, destination) in self.destinations.iter().enumerate() {
            if let Some(topic) = &destination.deletion_topic {
                topics.push(ConfiguredTopic {
                    name: topic,
                    field: format!("destination[{i}].deletion_topic"),
                    role: TopicRole::Deletion(i),
                });
            }
        }
        if let Some(audit) = &self.audit {
            topics.push(ConfiguredTopic {
                name: &audit.topic,
                field: "audit.topic".to_owned(),
                role: TopicRole::Audit,
            });
        }
        topics
    }

    /// The hold topic, when the hold is enabled.
    pub fn hold_topic(&self) -> Option<&str> {
        self.hold
            .enabled
            .then_some(self.hold.topic.as_deref())
            .flatten()
    }

    /// The topics the event consumer group reads, in the order their partitions are
    /// numbered: the input topics, then the hold topic.
    pub fn group_topics(&self) -> Vec<String> {
        self.topics()
            .into_iter()
            .filter(ConfiguredTopic::read_by_group)
            .map(|topic| topic.name.to_owned())
            .collect()
    }
}
