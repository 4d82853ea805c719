//! Secrets in the config: which librdkafka property keys hold one, and messages with their
//! values taken out. A message the enforcer prints (an error on stderr, a log line, a config's
//! `Debug`) never carries the value of a property whose key looks secret, nor the value of a
//! property librdkafka refused (a misspelled `sasl.pasword` is still a password).

use std::collections::BTreeMap;
use std::fmt;

use crate::config::KafkaConfig;

/// What stands in for a secret.
pub const REDACTED: &str = "<redacted>";

/// Parts of a key that mark its value as secret.
const SECRET_PARTS: [&str; 6] = [
    "password",
    "secret",
    "jaas",
    "token",
    "credential",
    "pasword",
];

/// True if `key`'s value must never be printed: `*password*`, `*secret*`, `*jaas*`,
/// `*token*`, `*credential*`, `ssl.key.*` (an inline private key) and
/// `sasl.oauthbearer.config` (which carries client secrets).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_PARTS.iter().any(|part| key.contains(part))
        || key.starts_with("ssl.key.")
        || key == "ssl.key"
        || key == "sasl.oauthbearer.config"
}

/// Takes the secret values of a config out of any text.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a value containing another is replaced whole.
    values: Vec<String>,
}

impl Redactor {
    /// The values of every secret-looking property of `kafka`.
    pub fn of(kafka: &KafkaConfig) -> Redactor {
        let mut values: Vec<String> = [
            &kafka.properties,
            &kafka.consumer_properties,
            &kafka.producer_properties,
        ]
        .into_iter()
        .flat_map(|map| map.iter())
        .filter(|(key, value)| is_secret_key(key) && !value.is_empty())
        .map(|(_, value)| value.clone())
        .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    /// Also takes `value` out.
    pub fn with(mut self, value: &str) -> Redactor {
        if !value.is_empty() {
            self.values.push(value.to_owned());
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
        self
    }

    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for value in &self.values {
            if text.contains(value.as_str()) {
                text = text.replace(value.as_str(), REDACTED);
            }
        }
        text
    }
}

/// A property table for `Debug`: secret-looking values redacted.
pub struct Properties<'a>(pub &'a BTreeMap<String, String>);

impl fmt::Debug for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let shown = if is_secret_key(key) {
                    REDACTED
                } else {
                    value.as_str()
                };
                (key, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_hold_secrets_are_recognised() {
        for key in [
            "sasl.password",
            "sasl.pasword",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl.keystore.password",
            "sasl.jaas.config",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "SASL.PASSWORD",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "sasl.username",
            "security.protocol",
            "ssl.ca.location",
            "linger.ms",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn secret_values_are_taken_out_of_text_and_debug() {
        let mut kafka: KafkaConfig =
            toml::from_str("bootstrap_servers = \"b:9092\"").expect("kafka config");
        kafka
            .properties
            .insert("sasl.password".into(), "hunter2".into());
        kafka
            .producer_properties
            .insert("sasl.username".into(), "enforcer".into());
        let redactor = Redactor::of(&kafka).with("also-this");
        assert_eq!(
            redactor.redact("bad hunter2 and also-this, user enforcer"),
            "bad <redacted> and <redacted>, user enforcer"
        );
        let debug = format!("{kafka:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("enforcer"), "{debug}");
    }
}
