//! The README's "Configuration": whatever the text, loading a config never panics, an error
//! is one line, and a config that loads keeps the documented limits.

use std::collections::HashSet;

use consent_enforcer::config::Config;
use consent_enforcer::vocabulary::Vocabulary;

use super::show;

/// Parses and validates one config text (what `check-config` does after reading the file)
/// and panics if an error spans lines or a valid config breaks a documented rule.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text, "fuzz.toml").and_then(|config| {
        config.validate()?;
        Ok(config)
    }) {
        Ok(config) => config,
        Err(error) => {
            let message = error.to_string();
            assert!(
                !message.contains(['\n', '\r']),
                "config {}: error is not one line: {message:?}",
                show(data)
            );
            return;
        }
    };
    let fail = |rule: &str| panic!("config {} loads, but {rule}", show(data));
    let destinations = &config.destinations;
    if destinations.is_empty() || destinations.len() > 200 {
        fail("it does not have 1 to 200 destinations");
    }
    if config.input.topics.is_empty() || config.input.topics.len() > 255 {
        fail("it does not have 1 to 255 input topics");
    }
    let names: HashSet<&str> = destinations.iter().map(|d| d.name.as_str()).collect();
    if names.len() != destinations.len() {
        fail("two destinations share a name");
    }
    let mut topics: Vec<&str> = config.input.topics.iter().map(String::as_str).collect();
    topics.push(&config.consent.topic);
    topics.push(&config.dead_letter.topic);
    if config.hold.enabled {
        topics.extend(config.hold.topic.as_deref());
    }
    topics.extend(destinations.iter().map(|d| d.topic.as_str()));
    if topics.iter().collect::<HashSet<_>>().len() != topics.len() {
        fail("a topic is used in two roles");
    }
    let categories: HashSet<&String> = destinations.iter().flat_map(|d| &d.categories).collect();
    if categories.len() > 64 {
        fail("it has more than 64 distinct categories");
    }
    let integrations: HashSet<String> = destinations
        .iter()
        .flat_map(|d| d.integration_names())
        .collect();
    if integrations.len() > 128 {
        fail("it has more than 128 distinct integration names");
    }
    if integrations.contains("All") {
        fail("\"All\" is an integration name");
    }
    // Interning the names into bit sets must hold within those limits.
    let vocabulary = Vocabulary::from_config(&config);
    // GPC and each jurisdiction take a bit too.
    let law_bits = if config.jurisdictions.is_empty() {
        0
    } else {
        1 + config.jurisdictions.len()
    };
    if usize::from(vocabulary.bit_count()) != categories.len() + channels(&config) + law_bits {
        fail("its vocabulary does not count its categories");
    }
}

/// How many distinct channels the destinations name.
fn channels(config: &consent_enforcer::config::Config) -> usize {
    let channels: HashSet<&str> = config
        .destinations
        .iter()
        .filter_map(|d| d.channel.as_deref())
        .collect();
    channels.len()
}
