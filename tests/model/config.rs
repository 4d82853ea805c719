//! The keys of the config the rules depend on, read from the TOML text with the README's
//! defaults (section "Configuration"). The text is assumed valid: src validates it.

use toml::{Table, Value};

#[derive(Debug, Clone)]
pub struct Config {
    /// `input.max_event_bytes`, default 1,000,000.
    pub max_event_bytes: usize,
    /// `consent.when_missing = "allow"` (default `"deny"`).
    pub when_missing_allow: bool,
    /// `consent.history_window`, default 7 days.
    pub history_window_ms: i64,
    /// `consent.history_max_changes`, default 8.
    pub history_max_changes: usize,
    pub destinations: Vec<Destination>,
    /// Every category some destination names, in order of first mention.
    pub categories: Vec<String>,
    /// Every integration name some destination looks up.
    pub integration_names: Vec<String>,
    /// `[consent.aliases]`: alias to category.
    pub aliases: Vec<(String, String)>,
    /// Every channel some destination names.
    pub channels: Vec<String>,
    /// `[[jurisdiction]]`, in order.
    pub jurisdictions: Vec<Jurisdiction>,
    pub default_jurisdiction: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Jurisdiction {
    pub name: String,
    /// `match`: ISO codes.
    pub codes: Vec<String>,
    /// `model = "opt-out"`.
    pub opt_out: bool,
    pub granted_by_default: Vec<String>,
    pub gpc_denies: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    /// Default: the destination's name.
    pub integration_names: Vec<String>,
    /// `[]` = strictly necessary.
    pub categories: Vec<String>,
    /// `match = "any"` (default `"all"`).
    pub match_any: bool,
    /// `channel`: the user must be `subscribed` on it.
    pub channel: Option<String>,
}

impl Config {
    pub fn from_toml(text: &str) -> Config {
        let root: Table = toml::from_str(text).expect("model: the config is TOML");
        let section = |name: &str| root.get(name).and_then(Value::as_table);
        let key = |table: &str, key: &str| section(table).and_then(|t| t.get(key)).cloned();
        let integer = |value: Option<Value>, default: i64| {
            value.and_then(|v| v.as_integer()).unwrap_or(default)
        };
        let destinations: Vec<Destination> = root
            .get("destination")
            .and_then(Value::as_array)
            .map(|list| list.iter().map(Destination::from_toml).collect())
            .unwrap_or_default();
        let mut categories: Vec<String> = Vec::new();
        let mut integration_names: Vec<String> = Vec::new();
        for dest in &destinations {
            for category in &dest.categories {
                if !categories.contains(category) {
                    categories.push(category.clone());
                }
            }
            for name in &dest.integration_names {
                if !integration_names.contains(name) {
                    integration_names.push(name.clone());
                }
            }
        }
        let aliases = section("consent")
            .and_then(|c| c.get("aliases"))
            .and_then(Value::as_table)
            .map(|table| {
                table
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("a category").to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let mut channels: Vec<String> = Vec::new();
        for channel in destinations.iter().filter_map(|d| d.channel.as_ref()) {
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(|s| s.as_str().expect("a string").to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let jurisdictions = root
            .get("jurisdiction")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|j| Jurisdiction {
                        name: j["name"].as_str().expect("a name").to_owned(),
                        codes: strings(j.get("match")),
                        opt_out: j["model"].as_str() == Some("opt-out"),
                        granted_by_default: strings(j.get("granted_by_default")),
                        gpc_denies: strings(j.get("gpc_denies")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Config {
            categories,
            integration_names,
            aliases,
            channels,
            jurisdictions,
            default_jurisdiction: key("consent", "default_jurisdiction")
                .map(|v| v.as_str().expect("a name").to_owned()),
            max_event_bytes: integer(key("input", "max_event_bytes"), 1_000_000) as usize,
            when_missing_allow: key("consent", "when_missing")
                .is_some_and(|v| v.as_str() == Some("allow")),
            history_window_ms: key("consent", "history_window").map_or(7 * 86_400_000, |v| {
                duration_ms(v.as_str().expect("a duration"))
            }),
            history_max_changes: integer(key("consent", "history_max_changes"), 8) as usize,
            destinations,
        }
    }
}

impl Destination {
    fn from_toml(value: &Value) -> Destination {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .expect("a list")
                .iter()
                .map(|s| s.as_str().expect("a string").to_owned())
                .collect()
        };
        let name = value["name"].as_str().expect("a name").to_owned();
        Destination {
            integration_names: value
                .get("integration_names")
                .map_or_else(|| vec![name.clone()], strings),
            categories: strings(&value["categories"]),
            match_any: value.get("match").and_then(Value::as_str) == Some("any"),
            channel: value
                .get("channel")
                .map(|v| v.as_str().expect("a channel").to_owned()),
            name,
        }
    }
}

impl Config {
    /// README, "CMP category IDs": the names that stand for `category` in consent
    /// preferences: itself and its aliases.
    pub fn names_of<'a>(&'a self, category: &'a str) -> Vec<&'a str> {
        std::iter::once(category)
            .chain(
                self.aliases
                    .iter()
                    .filter(|(_, c)| c == category)
                    .map(|(a, _)| a.as_str()),
            )
            .collect()
    }

    /// Every name read in consent preferences: the categories and every alias.
    pub fn preference_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.categories.iter().map(String::as_str).collect();
        for (alias, _) in &self.aliases {
            if !names.contains(&alias.as_str()) {
                names.push(alias);
            }
        }
        names
    }

    /// The categories a list of consent IDs (or names) stands for.
    pub fn categories_named<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let ids: Vec<&str> = ids.into_iter().collect();
        self.categories
            .iter()
            .filter(|c| self.names_of(c).iter().any(|n| ids.contains(n)))
            .cloned()
            .collect()
    }
}

impl Config {
    /// README, "Jurisdictions": the jurisdiction a state's `jurisdiction` or an event's
    /// location code names: a jurisdiction's name; else a code in its `match`; else, for a
    /// subdivision code (`US-TX`), its country's code (`US`).
    pub fn jurisdiction_of(&self, text: &str) -> Option<String> {
        if let Some(j) = self.jurisdictions.iter().find(|j| j.name == text) {
            return Some(j.name.clone());
        }
        let code = text.trim().to_ascii_uppercase();
        let matching = |code: &str| {
            self.jurisdictions
                .iter()
                .find(|j| j.codes.iter().any(|c| c == code))
                .map(|j| j.name.clone())
        };
        matching(&code).or_else(|| matching(code.split('-').next().unwrap_or_default()))
    }
}

/// The facts a model state keeps beside its grants: the jurisdiction it was made under and a
/// GPC signal (only with `[[jurisdiction]]`).
pub const JURISDICTION_FACT: &str = "\u{0}jurisdiction:";
pub const GPC_FACT: &str = "\u{0}gpc";

/// The fact, in a model state's grants, that the user is subscribed on `channel`: kept in
/// the same set as the categories, under a name no category has.
pub fn subscribed(channel: &str) -> String {
    format!("\u{0}subscribed:{channel}")
}

/// `500ms`, `30s`, `10m`, `2h`, `7d`.
fn duration_ms(text: &str) -> i64 {
    let split = text.find(|c: char| !c.is_ascii_digit()).expect("a unit");
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().expect("a number");
    number
        * match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => panic!("model: unknown duration unit {other:?}"),
        }
}
