//! Durations in the config: one convention, a string with its unit (`"500ms"`, `"30s"`,
//! `"10m"`, `"2h"`, `"7d"`, `"1h 30m"`), parsed by the `humantime` crate. Settings that
//! predate it are still accepted under their old integer keys (`max_wait_ms = 1000`,
//! `drain_timeout_secs = 30`), documented as aliases: a config that worked keeps working.

use serde::Deserialize;

use super::load::ConfigError;
use super::validate::invalid;

/// A duration written with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const fn from_millis(ms: u64) -> Duration {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }

    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The units taken: humantime's, up to days.
const UNITS: [&str; 24] = [
    "nanos", "nsec", "ns", "usec", "us", "millis", "msec", "ms", "seconds", "second", "sec", "s",
    "minutes", "minute", "min", "m", "hours", "hour", "hr", "hrs", "h", "days", "day", "d",
];

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        // humantime takes a bare "0"; a duration here always says its unit.
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{text:?} has no unit; write it like \"500ms\", \"30s\", \"10m\", \"2h\" or \"7d\""
            ));
        }
        // Days are the largest unit, as they were before humantime. Weeks, months and years
        // are not taken: months and years are approximations there (30.44 and 365.25 days),
        // and "M" (months) is one keystroke from "m" (minutes): a hold.max_age = "10M" would
        // keep personal data for ten months.
        if text
            .split(|c: char| !c.is_ascii_alphabetic())
            .any(|unit| !unit.is_empty() && !UNITS.contains(&unit))
            && humantime::parse_duration(text).is_ok()
        {
            return Err(format!(
                "{text:?}: weeks, months and years are not accepted; write days, like \"30d\""
            ));
        }
        let parsed = humantime::parse_duration(text).map_err(|error| {
            format!("{text:?} is not a duration like \"500ms\", \"30s\", \"10m\", \"2h\" or \"7d\" ({error})")
        })?;
        // Past this the millisecond arithmetic downstream would saturate.
        if parsed.as_millis() > i64::MAX as u128 {
            return Err(format!("{text:?} is too long"));
        }
        Ok(Duration(parsed))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The unit of an old integer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasUnit {
    Millis,
    Secs,
}

/// A duration setting's names: the key (a duration string) and its older integer alias.
#[derive(Debug, Clone, Copy)]
pub struct DurationKey {
    /// e.g. `delivery.drain_timeout`.
    pub key: &'static str,
    /// e.g. `delivery.drain_timeout_secs`.
    pub alias: &'static str,
    pub alias_unit: AliasUnit,
    pub default: std::time::Duration,
    /// The least value that makes sense.
    pub min: std::time::Duration,
}

/// A duration setting as the config gave it: its value, and the key it is named by in
/// messages (the alias when the config used it or left the setting out, so that messages
/// read as they did before the duration keys existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting {
    pub value: std::time::Duration,
    key: &'static str,
    shown_as_alias: Option<AliasUnit>,
}

impl DurationSetting {
    /// `key = value` with the value's unit: `kafka.startup_timeout_secs = 15 s` for an
    /// integer key, `kafka.startup_timeout = "15s"` for a duration key.
    pub fn described(&self) -> String {
        match self.shown_as_alias {
            Some(AliasUnit::Secs) => format!("{self} s"),
            Some(AliasUnit::Millis) => format!("{self} ms"),
            None => self.to_string(),
        }
    }

    /// The key messages name it by.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The value as the config writes it under that key: `30` for `*_secs`, `"30s"` for a
    /// duration key.
    pub fn shown_value(&self) -> String {
        match self.shown_as_alias {
            Some(AliasUnit::Millis) => self.value.as_millis().to_string(),
            Some(AliasUnit::Secs) => self.value.as_secs().to_string(),
            None => format!("\"{}\"", humantime::format_duration(self.value)),
        }
    }
}

/// `key = value`, in the form the config uses for that key.
impl std::fmt::Display for DurationSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.key, self.shown_value())
    }
}

impl DurationKey {
    /// The setting from the two optional fields (checked by [`DurationKey::check`]).
    pub fn resolve(&self, value: Option<Duration>, alias: Option<u64>) -> DurationSetting {
        match (value, alias) {
            (Some(value), _) => DurationSetting {
                value: value.get(),
                key: self.key,
                shown_as_alias: None,
            },
            (None, alias) => DurationSetting {
                value: alias.map_or(self.default, |n| self.alias_duration(n)),
                key: self.alias,
                shown_as_alias: Some(self.alias_unit),
            },
        }
    }

    fn alias_duration(&self, n: u64) -> std::time::Duration {
        match self.alias_unit {
            AliasUnit::Millis => std::time::Duration::from_millis(n),
            AliasUnit::Secs => std::time::Duration::from_secs(n),
        }
    }

    /// Rejects a setting given under both names, or below its minimum.
    pub fn check(&self, value: Option<Duration>, alias: Option<u64>) -> Result<(), ConfigError> {
        if value.is_some() && alias.is_some() {
            return Err(invalid(
                self.key,
                format!(
                    "{} is its older name: set one of them, not both",
                    self.alias
                ),
            ));
        }
        let setting = self.resolve(value, alias);
        if setting.value < self.min {
            let at_least = match setting.shown_as_alias {
                Some(_) => "must be at least 1".to_owned(),
                None => format!("must be at least {}", humantime::format_duration(self.min)),
            };
            return Err(invalid(setting.key, at_least));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAIN: DurationKey = DurationKey {
        key: "delivery.drain_timeout",
        alias: "delivery.drain_timeout_secs",
        alias_unit: AliasUnit::Secs,
        default: std::time::Duration::from_secs(30),
        min: std::time::Duration::from_secs(1),
    };

    #[test]
    fn either_name_sets_the_same_duration_and_messages_name_the_one_used() {
        let by_key = DRAIN.resolve(Some("45s".parse().unwrap()), None);
        let by_alias = DRAIN.resolve(None, Some(45));
        assert_eq!(by_key.value, by_alias.value);
        assert_eq!(by_key.to_string(), "delivery.drain_timeout = \"45s\"");
        assert_eq!(by_alias.to_string(), "delivery.drain_timeout_secs = 45");
        let default = DRAIN.resolve(None, None);
        assert_eq!(default.value, std::time::Duration::from_secs(30));
        assert_eq!(default.to_string(), "delivery.drain_timeout_secs = 30");
        assert_eq!(default.described(), "delivery.drain_timeout_secs = 30 s");
        assert_eq!(by_key.described(), "delivery.drain_timeout = \"45s\"");
    }

    #[test]
    fn a_bare_number_weeks_months_and_years_are_not_durations() {
        for bad in [
            "0", "10", "10M", "1 month", "2y", "1year 2d", "2w", "10 weeks",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
        for (good, ms) in [
            ("0s", 0),
            ("10m", 600_000),
            ("1h 30m", 5_400_000),
            ("7d", 604_800_000),
        ] {
            assert_eq!(good.parse::<Duration>().unwrap().as_millis(), ms, "{good}");
        }
    }

    #[test]
    fn both_names_at_once_or_too_short_is_refused() {
        let both = DRAIN.check(Some("45s".parse().unwrap()), Some(45));
        assert!(both.unwrap_err().to_string().contains("not both"));
        let short = DRAIN.check(Some("500ms".parse().unwrap()), None);
        assert!(short
            .unwrap_err()
            .to_string()
            .contains("delivery.drain_timeout: must be at least 1s"));
        let zero = DRAIN.check(None, Some(0));
        assert!(zero
            .unwrap_err()
            .to_string()
            .contains("delivery.drain_timeout_secs: must be at least 1"));
        assert!(DRAIN.check(None, None).is_ok());
    }
}
