//! `${VAR}` in any string value of the config, as vector and Redpanda Connect allow: a pod's
//! name into `delivery.transactional_id`, a topic prefix per environment. The `kafka.*properties`
//! tables are left to [`crate::secrets::resolve`], which also reads `*_file` keys and keeps what
//! it puts in out of logs. `$${` is a literal `${`.

use toml::{Table, Value};

use super::ConfigError;

/// Tables resolved later, with the secrets' rules.
const PROPERTY_TABLES: [&str; 3] = [
    "kafka.properties",
    "kafka.consumer_properties",
    "kafka.producer_properties",
];

/// The config text with `${VAR}` replaced everywhere but in the property tables, or `None`
/// when there is nothing to replace (the text is then parsed as it is, so that errors point
/// at its own lines). Text that is not TOML is left to the parser's error.
pub(super) fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    if !text.contains("${") {
        return Ok(None);
    }
    let Ok(mut table) = text.parse::<Table>() else {
        return Ok(None);
    };
    let mut changed = false;
    walk_table(&mut table, "", env, &mut changed)?;
    if !changed {
        return Ok(None);
    }
    toml::to_string(&table)
        .map(Some)
        .map_err(|error| ConfigError::Invalid {
            field: "config".to_owned(),
            message: format!("cannot be written back after ${{VAR}} substitution: {error}"),
        })
}

fn walk_table(
    table: &mut Table,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    changed: &mut bool,
) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        let field = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if PROPERTY_TABLES.contains(&field.as_str()) {
            continue;
        }
        walk(value, &field, env, changed)?;
    }
    Ok(())
}

fn walk(
    value: &mut Value,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
    changed: &mut bool,
) -> Result<(), ConfigError> {
    match value {
        Value::String(text) if text.contains('$') => {
            let replaced = crate::secrets::substitute(text, field, env, &mut Vec::new())?;
            if replaced != *text {
                *text = replaced;
                *changed = true;
            }
        }
        Value::Table(table) => walk_table(table, field, env, changed)?,
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                // `[[destination]]` number 0 is `destination[0]`, as validation names it.
                walk(item, &format!("{field}[{i}]"), env, changed)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "POD" => Some("enforcer-2".to_owned()),
            "SECRET" => Some("hunter2".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn variables_are_replaced_outside_the_property_tables() {
        let text = r#"
[kafka]
bootstrap_servers = "kafka:9092"
[kafka.properties]
"sasl.password" = "${SECRET}"
[delivery]
transactional_id = "consent-enforcer-${POD}"
[[destination]]
name = "a"
topic = "dest.$${literal}"
"#;
        let out = interpolate(text, &env).unwrap().expect("changed");
        let table: Table = out.parse().unwrap();
        assert_eq!(
            table["delivery"]["transactional_id"].as_str(),
            Some("consent-enforcer-enforcer-2")
        );
        assert_eq!(
            table["destination"][0]["topic"].as_str(),
            Some("dest.${literal}")
        );
        // Left for the secrets' resolution, which also tracks it for redaction.
        assert_eq!(
            table["kafka"]["properties"]["sasl.password"].as_str(),
            Some("${SECRET}")
        );
        assert_eq!(
            interpolate("[kafka]\nbootstrap_servers = \"a\"\n", &env).unwrap(),
            None
        );
    }

    #[test]
    fn an_unset_variable_names_the_field() {
        let text = "[[destination]]\nname = \"a\"\ntopic = \"${NOPE}\"\n";
        let error = interpolate(text, &env).unwrap_err().to_string();
        assert!(
            error.contains("destination[0].topic") && error.contains("NOPE"),
            "{error}"
        );
    }
}
