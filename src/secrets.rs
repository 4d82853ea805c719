//! Secrets in the config: which librdkafka property keys hold one, and messages with their
//! values taken out. A message the enforcer prints (an error on stderr, a log line, a config's
//! `Debug`) never carries the value of a property whose key looks secret, nor the value of a
//! property librdkafka refused (a misspelled `sasl.pasword` is still a password).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::config::{ConfigError, KafkaConfig};

/// What stands in for a secret.
pub const REDACTED: &str = "<redacted>";

/// Parts of a key that mark its value as secret.
const SECRET_PARTS: [&str; 8] = [
    "password",
    "secret",
    "jaas",
    "token",
    "credential",
    "pasword",
    "passphrase",
    "private.key",
];

/// True if `key`'s value must never be printed: `*password*`, `*secret*`, `*jaas*`,
/// `*token*`, `*credential*`, `*passphrase*`, `*private.key*`, `ssl.key.*` (an inline
/// private key) and
/// `sasl.oauthbearer.config` (which carries client secrets).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_PARTS.iter().any(|part| key.contains(part))
        || key.starts_with("ssl.key.")
        || key == "ssl.key"
        || key == "sasl.oauthbearer.config"
}

/// Values put in from `${VAR}` or `*_file` under keys that do not look secret are taken out of
/// texts only from this length on: a short one (`SSL`, `PLAIN`, `1`) is no secret, and taking
/// it out would garble every log line that mentions it.
const MIN_INDIRECT_REDACTED: usize = 8;

/// Keys whose values are no secrets, even when put in from `${VAR}` or `*_file`: taking them
/// out of texts would only hide what a connection error is about.
fn is_plain_key(key: &str) -> bool {
    const PLAIN: [&str; 10] = [
        "bootstrap.servers",
        "group.instance.id",
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.kerberos.service.name",
        "client.id",
        "client.rack",
        "ssl.endpoint.identification.algorithm",
    ];
    let key = key.to_ascii_lowercase();
    PLAIN.contains(&key.as_str()) || (key.ends_with(".location") && !is_secret_key(&key))
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
        .chain(
            kafka
                .indirect_values
                .iter()
                .filter(|v| v.len() >= MIN_INDIRECT_REDACTED)
                .cloned(),
        )
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

/// The redactor librdkafka's log lines and error reports go through (see [`redact_logs`]).
static LOG_REDACTOR: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();

/// From now on, librdkafka's logs and error reports have `redactor`'s values taken out: its
/// texts can quote property values (a malformed `sasl.oauthbearer.config`, for one). The
/// first call wins.
pub fn redact_logs(redactor: Redactor) {
    let _ = LOG_REDACTOR.set(redactor);
}

/// `text` without the values [`redact_logs`] was given.
pub fn redact_log(text: &str) -> std::borrow::Cow<'_, str> {
    match LOG_REDACTOR.get() {
        Some(redactor) if redactor.values.iter().any(|v| text.contains(v.as_str())) => {
            std::borrow::Cow::Owned(redactor.redact(text))
        }
        _ => std::borrow::Cow::Borrowed(text),
    }
}

/// A property table for `Debug`: secret-looking values, and values holding any of the second
/// field's (those put in from `${VAR}` and `*_file`), redacted.
pub struct Properties<'a>(pub &'a BTreeMap<String, String>, pub &'a [String]);

impl fmt::Debug for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let indirect = self
                    .1
                    .iter()
                    .any(|v| v.len() >= MIN_INDIRECT_REDACTED && value.contains(v.as_str()));
                let shown = if is_secret_key(key) || indirect {
                    REDACTED
                } else {
                    value.as_str()
                };
                (key, shown)
            }))
            .finish()
    }
}

/// Keys ending in this take their value from the file they name: `"sasl.password_file" =
/// "/run/secrets/kafka"` sets `sasl.password` to the file's content (one trailing newline
/// dropped).
pub const FILE_SUFFIX: &str = "_file";

/// Resolves secret indirections in a property table, in place: `${VAR}` anywhere in a value
/// is replaced by the environment variable `VAR`, and a `<key>_file` entry becomes `<key>`
/// with the named file's content. Errors name the key and the variable or path, never a
/// value. Returns what was put in (the variables' values and the files' contents): kept out
/// of the config file on purpose, they are redacted like secrets whatever their key.
pub fn resolve(
    properties: &mut BTreeMap<String, String>,
    table: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConfigError> {
    let mut resolved = BTreeMap::new();
    let mut indirect = Vec::new();
    for (key, value) in std::mem::take(properties) {
        let field = format!("kafka.{table}.{key}");
        // A file name substituted into a `*_file` key is no secret; its content may be.
        let mut pieces = Vec::new();
        let value = substitute(&value, &field, env, &mut pieces)?;
        if !is_plain_key(&key) && !key.ends_with(FILE_SUFFIX) {
            indirect.extend(pieces);
        }
        match key.strip_suffix(FILE_SUFFIX) {
            Some(target) if !target.is_empty() => {
                let content =
                    std::fs::read_to_string(&value).map_err(|error| ConfigError::Invalid {
                        field: field.clone(),
                        message: format!("cannot read {value}: {error}"),
                    })?;
                let content = content
                    .strip_suffix('\n')
                    .map(|c| c.strip_suffix('\r').unwrap_or(c))
                    .unwrap_or(&content)
                    .to_owned();
                if !is_plain_key(target) {
                    indirect.push(content.clone());
                }
                if resolved.insert(target.to_owned(), content).is_some() {
                    return Err(ConfigError::Invalid {
                        field,
                        message: format!("{target} is also set directly"),
                    });
                }
            }
            _ => {
                if resolved.insert(key.clone(), value).is_some() {
                    return Err(ConfigError::Invalid {
                        field,
                        message: format!("also set with {key}{FILE_SUFFIX}"),
                    });
                }
            }
        }
    }
    *properties = resolved;
    indirect.retain(|value| !value.is_empty());
    Ok(indirect)
}

/// `${VAR}` replaced by the environment's `VAR` (`$${` stands for a literal `${`).
pub(crate) fn substitute(
    value: &str,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
    indirect: &mut Vec<String>,
) -> Result<String, ConfigError> {
    if !value.contains('$') {
        return Ok(value.to_owned());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(after) = after.strip_prefix("${") {
            // `$${` is a literal `${`; any other `$` (a `$$` in a password) stays as it is.
            out.push_str("${");
            rest = after;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                return Err(ConfigError::Invalid {
                    field: field.to_owned(),
                    message: "an unclosed ${ in its value".to_owned(),
                });
            };
            let name = &inner[..end];
            let Some(found) = env(name) else {
                return Err(ConfigError::Invalid {
                    field: field.to_owned(),
                    message: format!("environment variable {name} is not set"),
                });
            };
            out.push_str(&found);
            indirect.push(found);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A warning, if a config file that writes a secret out in full (not through `${VAR}` or
/// `*_file`) can be read by its group or by others.
pub fn exposed_secret_warning(path: &Path, raw_secret_keys: &[String]) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let key = raw_secret_keys.first()?;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "config {} holds a secret ({key}) and is readable by its group or others (mode {:o}): chmod 600 it, or pass the secret with ${{VAR}} or {key}{FILE_SUFFIX}",
            path.display(),
            mode & 0o777
        )
    })
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
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "sasl.oauthbearer.assertion.private.key.pem",
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

    #[test]
    fn log_lines_lose_the_values_given_for_logs() {
        redact_logs(Redactor::default().with("log-secret-31"));
        assert_eq!(
            redact_log("bad config: log-secret-31 here"),
            "bad config: <redacted> here"
        );
        assert!(matches!(
            redact_log("nothing"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn values_put_in_from_variables_and_files_are_redacted_whatever_their_key() {
        let mut kafka: KafkaConfig =
            toml::from_str("bootstrap_servers = \"b:9092\"").expect("kafka config");
        kafka.properties.insert(
            "sasl.oauthbearer.extensions".into(),
            "id-${KAFKA_PASSWORD}".into(),
        );
        kafka
            .properties
            .insert("client.id".into(), "${KAFKA_PASSWORD}-host".into());
        kafka.indirect_values =
            resolve(&mut kafka.properties, "properties", &env).expect("resolved");
        kafka.indirect_values.push("SSL".into());
        assert_eq!(
            kafka.properties["sasl.oauthbearer.extensions"],
            "id-from-env"
        );
        let debug = format!("{kafka:?}");
        assert!(!debug.contains("id-from-env"), "{debug}");
        assert_eq!(
            Redactor::of(&kafka).redact("extensions id-from-env refused over SSL"),
            "extensions id-<redacted> refused over SSL"
        );
    }

    fn env(name: &str) -> Option<String> {
        (name == "KAFKA_PASSWORD").then(|| "from-env".to_owned())
    }

    #[test]
    fn variables_and_files_resolve_and_their_errors_show_no_value() {
        let dir = std::env::temp_dir().join(format!("secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("password");
        std::fs::write(&file, "from-file\n").expect("write");
        let mut properties: BTreeMap<String, String> = [
            ("sasl.password".to_owned(), "${KAFKA_PASSWORD}".to_owned()),
            (
                "ssl.key.password_file".to_owned(),
                file.display().to_string(),
            ),
            ("client.rack".to_owned(), "a$$b$${c}".to_owned()),
        ]
        .into();
        let indirect = resolve(&mut properties, "properties", &env).expect("resolved");
        assert_eq!(indirect, ["from-env", "from-file"]);
        assert_eq!(properties["sasl.password"], "from-env");
        assert_eq!(properties["ssl.key.password"], "from-file");
        assert_eq!(properties["client.rack"], "a$$b${c}");
        assert!(!properties.contains_key("ssl.key.password_file"));

        let mut missing: BTreeMap<String, String> = [(
            "sasl.password".to_owned(),
            "x${NOT_SET_ANYWHERE}".to_owned(),
        )]
        .into();
        let error = resolve(&mut missing, "properties", &env)
            .expect_err("unset variable")
            .to_string();
        assert!(error.contains("NOT_SET_ANYWHERE"), "{error}");
        assert!(error.contains("kafka.properties.sasl.password"), "{error}");
    }
}
