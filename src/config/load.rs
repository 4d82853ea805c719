//! Reading a config file: parse errors that name the line and never quote a secret, and the
//! `${VAR}` and `*_file` indirections.

use std::path::Path;

use super::{Config, BOOTSTRAP_ENV};
use crate::secrets::{self, is_secret_key, REDACTED};

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

/// The field whose value holds byte `at`, as `section.key`: toml's messages for a value the
/// config's types refuse (a duration without a unit, an integer where a string belongs) name
/// only the line. None unless the line is a plain `key = value` and `at` is in its value.
fn field_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    let equals = line.find('=')?;
    if start + equals >= at {
        return None;
    }
    let key = line[..equals].trim();
    let plain = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if !plain(key) {
        return None;
    }
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|header| header.trim_matches(|c| c == '[' || c == ']').trim());
    match section {
        Some(section) if plain(section) => Some(format!("{section}.{key}")),
        Some(_) => None,
        None => Some(key.to_owned()),
    }
}

/// A serde/toml message with the values it quotes (between backticks) taken out.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { REDACTED } else { part });
    }
    out
}

impl Config {
    /// Reads, parses and validates a config file, applying `KAFKA_BOOTSTRAP_SERVERS` if set.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let env = |name: &str| std::env::var(name).ok();
        let text = super::interpolate::interpolate(&text, &env)?.unwrap_or(text);
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
                    match field_at(text, span.start) {
                        Some(field) => format!(" (line {line}, {field})"),
                        None => format!(" (line {line})"),
                    }
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
}
