//! Generated consent records: valid ones (grants, times, identifiers) and malformed ones.

use super::*;

impl Gen {
    pub(super) fn record(&mut self) -> Step {
        let kafka_ts = self.kafka_ts();
        let now = self.now;
        let record_time = kafka_ts.unwrap_or(now);
        let id = self.id();
        let key = match self.rng.below(60) {
            0 => None,
            1 => Some(b"u\xff".to_vec()),
            _ => Some(id.as_bytes().to_vec()),
        };
        let (value, note) = match self.rng.below(100) {
            0..=8 => (None, "tombstone"),
            9..=20 => {
                let (value, note) = self.malformed_record(record_time);
                (Some(value), note)
            }
            _ => {
                let (value, note) = self.valid_record(id, record_time);
                (Some(value), note)
            }
        };
        Step::Record {
            key,
            value,
            kafka_ts,
            now,
            note,
            privacy: false,
        }
    }

    /// A suppression requested and lifted a few units later, its middle left in the pool of
    /// times so that events come dated within it.
    pub(super) fn suppression_episode(&mut self, steps: &mut Vec<Step>) {
        let id = self.id();
        let from = self.now;
        for kind in ["SUPPRESS", "UNSUPPRESS"] {
            let at = self.timestamp_text(self.now);
            steps.push(Step::Record {
                key: Some(id.as_bytes().to_vec()),
                value: Some(format!(r#"{{"type":"{kind}","requestedAt":{at}}}"#).into_bytes()),
                kafka_ts: Some(self.now),
                now: self.now,
                note: "privacy: suppression episode",
                privacy: true,
            });
            self.now += self.rng.range(2, 4) * self.unit;
        }
        let middle = from + (self.now - from) / 3;
        self.pool.extend([middle, middle, middle]);
    }

    /// A record of the privacy-requests topic: mostly valid requests, dated now, earlier or
    /// at a time already used; some withdrawn, some not understood.
    pub(super) fn privacy_request(&mut self) -> Step {
        let kafka_ts = self.kafka_ts();
        let now = self.now;
        let record_time = kafka_ts.unwrap_or(now);
        let id = self.id();
        let key = match self.rng.below(30) {
            0 => None,
            _ => Some(id.as_bytes().to_vec()),
        };
        let at = match self.rng.below(10) {
            0..=4 => Some(self.timestamp_text(record_time)),
            5..=6 => {
                let t = self.pooled();
                Some(self.timestamp_text(t))
            }
            7 => Some("null".to_owned()),
            8 => Some("7".to_owned()),
            _ => None,
        };
        let kind = *self.rng.pick(&[
            "\"SUPPRESS\"",
            "\"SUPPRESS\"",
            "\"SUPPRESS_WITH_DELETE\"",
            "\"DELETE_ONLY\"",
            "\"UNSUPPRESS\"",
            "\"UNSUPPRESS\"",
            "\"suppress\"",
            "1",
        ]);
        let (value, note) = match self.rng.below(20) {
            0 => (None, "privacy: withdrawn"),
            1 => (Some("not json".to_owned()), "privacy: not JSON"),
            2 => (Some(format!("[{kind}]")), "privacy: array"),
            3 => (
                Some(format!(r#"{{"type":{kind},"type":"UNSUPPRESS"}}"#)),
                "privacy: type twice",
            ),
            _ => {
                let mut entries = vec![("\"type\"".to_owned(), kind.to_owned())];
                if let Some(at) = at {
                    entries.push(("\"requestedAt\"".to_owned(), at));
                }
                entries.push(("\"source\"".to_owned(), "\"dsr\"".to_owned()));
                self.rng.shuffle(&mut entries);
                (Some(object(&entries)), "privacy request")
            }
        };
        Step::Record {
            key,
            value: value.map(String::into_bytes),
            kafka_ts,
            now,
            note,
            privacy: true,
        }
    }

    /// A few identical choices re-sent in a row, to reach the bound on all kept states.
    pub(super) fn resend_burst(&mut self, steps: &mut Vec<Step>) {
        let id = self.id();
        let grants = self.grants(false);
        // Half the time just past the bound on all kept states (8 x history_max_changes).
        let count = match self.max_changes {
            Some(max @ 1..=2) if self.rng.chance(50) => 8 * max as i64 + self.rng.range(2, 4),
            _ => self.rng.range(3, 10),
        };
        for _ in 0..count {
            self.now += *self.rng.pick(&[0, 0, self.unit]);
            let kafka_ts = Some(self.now);
            self.pool.push(self.now);
            let updated_at = self.timestamp_text(self.now);
            let value = format!(r#"{{"categoryPreferences":{grants},"updatedAt":{updated_at}}}"#);
            steps.push(Step::Record {
                key: Some(id.as_bytes().to_vec()),
                value: Some(value.into_bytes()),
                kafka_ts,
                now: self.now,
                note: if std::mem::take(&mut self.odd_separator) {
                    ODD_SEPARATOR
                } else {
                    "re-sent choice (burst)"
                },
                privacy: false,
            });
        }
        self.remember_grants(id, grants);
    }

    pub(super) fn remember_grants(&mut self, id: &'static str, grants: String) {
        self.last_grants.retain(|(i, _)| *i != id);
        self.last_grants.push((id, grants));
    }

    /// A `categoryPreferences` object (for records and stamps).
    pub(super) fn grants(&mut self, full: bool) -> String {
        let mut entries: Vec<(String, String)> = Vec::new();
        let categories = self.categories.clone();
        for category in categories.iter().copied().chain([UNCONFIGURED]) {
            let value = if full && category != UNCONFIGURED {
                "true"
            } else {
                match self.rng.below(20) {
                    0..=8 => "true",
                    9..=13 => "false",
                    14 => "\"true\"",
                    15 => "1",
                    16 => "null",
                    _ => continue,
                }
            };
            entries.push((self.key(category), value.to_owned()));
        }
        // CMP IDs by their aliases, beside or instead of the names (and one never configured).
        let ids: Vec<&str> = self.aliases.iter().copied().chain([UNKNOWN_ID]).collect();
        for id in ids {
            if self.rng.chance(40) {
                let value = if full {
                    "true"
                } else {
                    *self.rng.pick(&["true", "true", "false", "null"])
                };
                entries.push((self.key(id), value.to_owned()));
            }
        }
        self.rng.shuffle(&mut entries);
        object(&entries)
    }

    /// A `subscriptions` object over the channels (and one never configured).
    pub(super) fn subscriptions(&mut self) -> String {
        let mut entries: Vec<(String, String)> = Vec::new();
        let channels: Vec<&str> = self.channels.iter().copied().chain(["push"]).collect();
        for channel in channels {
            let status = match self.rng.below(12) {
                0..=4 => "\"subscribed\"",
                5 => "\"SUBSCRIBED\"",
                6..=7 => "\"unsubscribed\"",
                8 => "\"did_not_subscribe\"",
                9 => "true",
                10 => "null",
                _ => continue,
            };
            entries.push((self.key(channel), status.to_owned()));
        }
        self.rng.shuffle(&mut entries);
        object(&entries)
    }

    pub(super) fn valid_record(
        &mut self,
        id: &'static str,
        record_time: i64,
    ) -> (Vec<u8>, &'static str) {
        let resent = self
            .last_grants
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, g)| g.clone());
        let (grants, mut note) = match (self.rng.below(100), resent) {
            (0..=24, Some(previous)) => (previous, "re-sent choice"),
            (25..=36, _) => (self.grants(true), "every category granted"),
            (37..=44, _) => ("{}".to_owned(), "nothing granted"),
            _ => (self.grants(false), "choice"),
        };
        self.remember_grants(id, grants.clone());
        let updated_at = match self.rng.below(100) {
            0..=34 => Some(self.timestamp_text(record_time)),
            35..=46 => {
                let t = record_time - self.rng.range(1, 3) * self.unit;
                Some(self.timestamp_text(t))
            }
            47..=60 => {
                let t = self.pooled() + *self.rng.pick(&[0, 0, 0, -1, 1]);
                Some(self.timestamp_text(t))
            }
            61..=64 => {
                note = "future-dated";
                let t = record_time + self.rng.range(1, 50) * self.unit;
                Some(self.timestamp_text(t))
            }
            65 => {
                note = "future-dated";
                Some("\"2100-01-01T00:00:00Z\"".to_owned())
            }
            66 => Some("\"1970-01-01T00:00:00Z\"".to_owned()),
            67..=71 => {
                let t = record_time - self.window - self.unit;
                Some(self.timestamp_text(t))
            }
            72..=76 => Some("null".to_owned()),
            _ => None,
        };
        let mut entries = vec![("\"categoryPreferences\"".to_owned(), grants)];
        if let Some(updated_at) = updated_at {
            entries.push(("\"updatedAt\"".to_owned(), updated_at));
        }
        if self.rng.chance(2) {
            entries.push(("\"extra\"".to_owned(), exotic_json(&mut self.rng)));
        }
        if self.rng.chance(35) {
            let named = *self.rng.pick(&[
                "\"DE\"",
                "\"fr\"",
                "\"US-CA\"",
                "\"US-TX\"",
                "\"US\"",
                "\"BR\"",
                "\"EU\"",
                "\"California\"",
                "7",
            ]);
            entries.push(("\"jurisdiction\"".to_owned(), named.to_owned()));
        }
        if self.rng.chance(25) {
            let gpc = *self.rng.pick(&["true", "true", "false", "\"1\""]);
            entries.push(("\"gpc\"".to_owned(), gpc.to_owned()));
        }
        if !self.channels.is_empty() && self.rng.chance(60) {
            let subscriptions = match self.rng.below(10) {
                0 => (*self.rng.pick(&["null", "[]", "\"email\""])).to_owned(),
                _ => self.subscriptions(),
            };
            entries.push(("\"subscriptions\"".to_owned(), subscriptions));
        }
        if self.rng.chance(15) {
            entries.push(("\"source\"".to_owned(), "\"cmp\"".to_owned()));
            if self.rng.chance(50) {
                // A field nobody reads may repeat.
                entries.push(("\"source\"".to_owned(), "\"banner\"".to_owned()));
            }
        }
        self.rng.shuffle(&mut entries);
        (self.spaced(object(&entries)).into_bytes(), note)
    }

    pub(super) fn malformed_record(&mut self, record_time: i64) -> (Vec<u8>, &'static str) {
        let category = self.categories.first().copied().unwrap_or("analytics");
        let at = self.timestamp_text(record_time);
        let prefs = self.grants(false);
        let text = match self.rng.below(27) {
            0 => format!(r#"{{"categoryPreferences":{prefs},"updatedAt":{at}"#),
            1 => format!(r#"{{"categoryPreferences":{prefs}}} x"#),
            2 => {
                let mut bytes = br#"{"categoryPreferences":{},"note":""#.to_vec();
                bytes.extend_from_slice(b"\xff\"}");
                return (bytes, "malformed: invalid UTF-8");
            }
            3 => r#"{"categoryPreferences":{"analytics":tru}}"#.to_owned(),
            4 => "[1]".to_owned(),
            5 => "\"granted\"".to_owned(),
            6 => "null".to_owned(),
            7 => "7".to_owned(),
            8 => format!(r#"{{"categoryPreferences":{prefs},"categoryPreferences":{{}}}}"#),
            9 => format!(r#"{{"categoryPreferences":{prefs},"updatedAt":{at},"updatedAt":{at}}}"#),
            10 => format!(r#"{{"categoryPreferences":{{"{category}":true,"{category}":true}}}}"#),
            11 => format!(r#"{{"categoryPreferences":{prefs},"categoryPref\u0065rences":{{}}}}"#),
            12 => format!(r#"{{"updatedAt":{at}}}"#),
            13 => format!(r#"{{"categoryPreferences":null,"updatedAt":{at}}}"#),
            14 => r#"{"categoryPreferences":["analytics"]}"#.to_owned(),
            15 => r#"{"categoryPreferences":true}"#.to_owned(),
            16 => format!(r#"{{"categoryPreferences":{prefs},"updatedAt":1795341600000}}"#),
            17 => format!(r#"{{"categoryPreferences":{prefs},"updatedAt":"yesterday"}}"#),
            18 => format!(r#"{{"categoryPreferences":{prefs},"updatedAt":true}}"#),
            19 => format!(r#"{{"categoryPreferences":{prefs},"updatedAt":{{}}}}"#),
            20 => format!(r#"{{"categoryPreferences":{prefs},"updatedAt":"2026-11-22T10:00:00"}}"#),
            21 => {
                format!(r#"{{"categoryPreferences":{prefs},"updatedAt":"2026-02-30T10:00:00Z"}}"#)
            }
            22 => {
                format!(r#"{{"categoryPreferences":{prefs},"updatedAt":"2026-11-22T24:00:00Z"}}"#)
            }
            23 => {
                let subscriptions = self.subscriptions();
                format!(
                    r#"{{"categoryPreferences":{prefs},"subscriptions":{subscriptions},"subscriptions":{{}}}}"#
                )
            }
            25 => format!(r#"{{"categoryPreferences":{prefs},"gpc":true,"gpc":false}}"#),
            24 => {
                let channel = self.channels.first().copied().unwrap_or("email");
                format!(
                    r#"{{"categoryPreferences":{prefs},"subscriptions":{{"{channel}":"subscribed","{channel}":"subscribed"}}}}"#
                )
            }
            _ => r#"{"categoryPreferences":"x","updatedAt":17}"#.to_owned(),
        };
        (text.into_bytes(), "malformed")
    }
}
