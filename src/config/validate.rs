//! The cross-field checks done once at load. Each error names the field and the value at fault.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::*;

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
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
                if PROTECTED_PROPERTIES.contains(&key.as_str()) {
                    return Err(invalid(
                        format!("kafka.{table}.{key:?}"),
                        "is set by the enforcer itself: its delivery guarantee depends on it",
                    ));
                }
            }
        }
        STARTUP_TIMEOUT.check(self.kafka.startup_timeout, self.kafka.startup_timeout_secs)?;
        if self.input.topics.is_empty() {
            return Err(invalid("input.topics", "must name at least one topic"));
        }
        if self.input.topics.len() > 255 {
            return Err(invalid("input.topics", "at most 255 input topics"));
        }
        if self.input.max_event_bytes == 0 {
            return Err(invalid("input.max_event_bytes", "must be at least 1"));
        }
        if self.consent.learn_from_events && self.consent.learn_event_names.is_empty() {
            return Err(invalid(
                "consent.learn_event_names",
                "must name at least one event when consent.learn_from_events is true",
            ));
        }
        MAX_WAIT.check(self.consent.max_wait, self.consent.max_wait_ms)?;
        MAX_STALENESS.check(self.consent.max_staleness, self.consent.max_staleness_ms)?;
        let (wait, staleness) = (self.consent.max_wait(), self.consent.max_staleness());
        if staleness.value < wait.value {
            return Err(invalid(
                staleness.key(),
                format!("{} is shorter than {wait}", staleness.shown_value()),
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
        if let Some(audit) = &self.audit {
            for (field, value) in [
                ("audit.instance", &audit.instance),
                ("audit.checkpoint_group", &audit.checkpoint_group),
            ] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    return Err(invalid(field, "must not be empty"));
                }
            }
        }
        if self.delivery.transactional_id.is_some()
            && self.delivery.guarantee != Guarantee::ExactlyOnce
        {
            return Err(invalid(
                "delivery.transactional_id",
                "is only used with delivery.guarantee = \"exactly_once\"",
            ));
        }
        TRANSACTION_INTERVAL.check(
            self.delivery.transaction_interval,
            self.delivery.transaction_interval_ms,
        )?;
        if self.delivery.transaction_max_events == 0 {
            return Err(invalid(
                "delivery.transaction_max_events",
                "must be at least 1",
            ));
        }
        if self.hold.enabled {
            if self.hold.topic.is_none() {
                return Err(invalid(
                    "hold.topic",
                    "is required when hold.enabled = true",
                ));
            }
            if self.consent.when_missing() != WhenMissing::Deny {
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
        DRAIN_TIMEOUT.check(
            self.delivery.drain_timeout,
            self.delivery.drain_timeout_secs,
        )?;
        COMMIT_INTERVAL.check(
            self.delivery.commit_interval,
            self.delivery.commit_interval_ms,
        )?;
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
        let claims = self.topics();
        let mut roles: HashMap<&str, (&str, TopicRole)> = HashMap::new();
        for ConfiguredTopic {
            name: topic,
            field,
            role,
        } in &claims
        {
            if topic.trim().is_empty() {
                return Err(invalid(field.as_str(), "topic name must not be empty"));
            }
            // Destinations may share a deletion topic: each record names its destination.
            let shared_deletions = |other: TopicRole| {
                matches!(
                    (role, other),
                    (TopicRole::Deletion(_), TopicRole::Deletion(_))
                )
            };
            if let Some((first, _)) = roles
                .insert(topic, (field, *role))
                .filter(|(_, other)| !shared_deletions(*other))
            {
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
        let mut channels: Vec<&str> = Vec::new();
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
            if let Some(channel) = &dest.channel {
                if channel.trim().is_empty() {
                    return Err(invalid(
                        format!("destination[{i}].channel"),
                        "must not be empty (omit it for a destination that is not a channel)",
                    ));
                }
                if !channels.contains(&channel.as_str()) {
                    channels.push(channel);
                }
            }
            if dest.deletion_topic.is_some() && self.privacy.is_none() {
                return Err(invalid(
                    format!("destination[{i}].deletion_topic"),
                    "is written for delete requests, which need a [privacy] topic",
                ));
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
        // Channels take bits of the same set as categories.
        if categories.len() + channels.len() > MAX_CATEGORIES {
            return Err(invalid(
                "destination.channel",
                format!(
                    "{} distinct categories and {} distinct channels; at most {MAX_CATEGORIES} \
                     together are supported",
                    categories.len(),
                    channels.len()
                ),
            ));
        }
        self.check_aliases(&categories)?;
        self.check_jurisdictions(&categories, categories.len() + channels.len())?;
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

impl Config {
    /// `[consent.aliases]`: each alias names a category; an alias that is itself a category
    /// some destination needs would make one name mean two things.
    fn check_aliases(&self, categories: &[&str]) -> Result<(), ConfigError> {
        if self.consent.aliases.len() > MAX_ALIASES {
            return Err(invalid(
                "consent.aliases",
                format!(
                    "{} aliases; at most {MAX_ALIASES} are supported",
                    self.consent.aliases.len()
                ),
            ));
        }
        for (alias, category) in &self.consent.aliases {
            let field = format!("consent.aliases.{alias:?}");
            if alias.is_empty() {
                return Err(invalid(field, "an alias must not be empty"));
            }
            if category.is_empty() {
                return Err(invalid(field, "must name a category"));
            }
            if alias != category && self.consent.aliases.contains_key(category) {
                return Err(invalid(
                    field,
                    format!("{category:?} is itself an alias: name the category it stands for"),
                ));
            }
            if alias != category && categories.contains(&alias.as_str()) {
                return Err(invalid(
                    field,
                    format!("{alias:?} is a category of a destination, so it cannot stand for {category:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// `[[jurisdiction]]` and `consent.default_jurisdiction`.
    fn check_jurisdictions(
        &self,
        categories: &[&str],
        bits_used: usize,
    ) -> Result<(), ConfigError> {
        let jurisdictions = &self.jurisdictions;
        if jurisdictions.is_empty() {
            if self.consent.default_jurisdiction.is_some() {
                return Err(invalid(
                    "consent.default_jurisdiction",
                    "names a jurisdiction, but no [[jurisdiction]] is declared",
                ));
            }
            return Ok(());
        }
        // "deny" is what a jurisdiction without a default grants anyway; "allow" would not be.
        if self.consent.when_missing_set == Some(WhenMissing::Allow) {
            return Err(invalid(
                "consent.when_missing",
                "has no effect when [[jurisdiction]] is declared: each jurisdiction's model \
                 decides what a user with no choice gets (see consent.default_jurisdiction)",
            ));
        }
        if jurisdictions.len() > MAX_JURISDICTIONS {
            return Err(invalid(
                "jurisdiction",
                format!(
                    "{} jurisdictions; at most {MAX_JURISDICTIONS} are supported",
                    jurisdictions.len()
                ),
            ));
        }
        // One bit for GPC and one per jurisdiction, beside the categories and channels.
        if bits_used + 1 + jurisdictions.len() > MAX_CATEGORIES {
            return Err(invalid(
                "jurisdiction",
                format!(
                    "{bits_used} categories and channels, GPC and {} jurisdictions take more than {MAX_CATEGORIES} bits",
                    jurisdictions.len()
                ),
            ));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut codes: HashMap<&str, usize> = HashMap::new();
        for (i, j) in jurisdictions.iter().enumerate() {
            let field = |key: &str| format!("jurisdiction[{i}].{key}");
            if j.name.trim().is_empty() {
                return Err(invalid(field("name"), "must not be empty"));
            }
            if let Some(first) = names.insert(&j.name, i) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is already the name of jurisdiction[{first}]", j.name),
                ));
            }
            if j.codes.is_empty() {
                return Err(invalid(
                    field("match"),
                    "must list at least one ISO 3166 code",
                ));
            }
            for code in &j.codes {
                if !crate::location::is_code(code) {
                    return Err(invalid(
                        field("match"),
                        format!("{code:?} is not an ISO 3166-1 alpha-2 (\"DE\") or 3166-2 (\"US-CA\") code in upper case"),
                    ));
                }
                if let Some(first) = codes.insert(code, i) {
                    return Err(invalid(
                        field("match"),
                        format!("{code:?} is already matched by jurisdiction[{first}]"),
                    ));
                }
            }
            if j.model == LegalModel::OptIn && !j.granted_by_default.is_empty() {
                return Err(invalid(
                    field("granted_by_default"),
                    "an opt-in jurisdiction grants nothing until the user chooses",
                ));
            }
            for (key, list) in [
                ("granted_by_default", &j.granted_by_default),
                ("gpc_denies", &j.gpc_denies),
            ] {
                if let Some(unknown) = list.iter().find(|c| !categories.contains(&c.as_str())) {
                    return Err(invalid(
                        field(key),
                        format!("{unknown:?} is not a category of any destination"),
                    ));
                }
            }
        }
        if let Some(default) = &self.consent.default_jurisdiction {
            if !names.contains_key(default.as_str()) {
                return Err(invalid(
                    "consent.default_jurisdiction",
                    format!("{default:?} is not the name of a [[jurisdiction]]"),
                ));
            }
        }
        Ok(())
    }
}
