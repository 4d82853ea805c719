//! Generated events: identifiers, timestamps, stamps, `integrations`, and malformed ones.

use super::*;

impl Gen {
    pub(super) fn event(&mut self) -> Step {
        let kafka_ts = self.kafka_ts();
        let now = self.now;
        let (value, note) = if self.rng.chance(9) {
            self.malformed_event()
        } else {
            (Some(self.valid_event(kafka_ts.unwrap_or(now))), "event")
        };
        Step::Event {
            value,
            kafka_ts,
            now,
            sweep: self.rng.chance(30),
            note,
        }
    }

    pub(super) fn identifier(&mut self) -> Option<String> {
        Some(match self.rng.below(100) {
            0..=54 => format!("{:?}", self.id()),
            55..=62 => {
                // Escapes are decoded: "\u00751" is "u1".
                let id = self.id();
                let first = id.chars().next().expect("identifiers are not empty");
                let rest: String = id.chars().skip(1).collect();
                format!("\"\\u{:04x}{rest}\"", first as u32)
            }
            63 => "42".to_owned(),
            64 => "null".to_owned(),
            65 => "\"\"".to_owned(),
            66 => "{\"id\":\"u1\"}".to_owned(),
            67 => "[\"u1\"]".to_owned(),
            _ => return None,
        })
    }

    pub(super) fn event_timestamp(&mut self, record_time: i64) -> Option<String> {
        let t = match self.rng.below(100) {
            0..=14 => return None,
            15..=39 => self.pooled(),
            40..=49 => self.pooled() + *self.rng.pick(&[-1, 1]),
            50..=64 => record_time - self.rng.range(1, 3) * self.unit,
            65..=69 => record_time + self.rng.range(1, 20) * self.unit,
            70..=72 => record_time - self.window - self.rng.range(1, 3) * self.unit,
            73..=74 => record_time - self.window,
            75..=79 => {
                return Some(
                    (*self
                        .rng
                        .pick(&["\"yesterday\"", "1795341600", "null", "{}", "true"]))
                    .to_owned(),
                )
            }
            _ => record_time,
        };
        Some(self.timestamp_text(t))
    }

    pub(super) fn stamp(&mut self) -> Option<String> {
        let extra = ("\"ip\"".to_owned(), "\"1.2.3.4\"".to_owned());
        let consent = match self.rng.below(100) {
            0..=39 => return None,
            40..=49 => return Some(object(&[extra])),
            50..=79 => {
                let full = self.rng.chance(15);
                let grants = self.grants(full);
                object(&[("\"categoryPreferences\"".to_owned(), grants)])
            }
            80..=86 => {
                let value = *self.rng.pick(&["null", "[]", "\"yes\"", "true"]);
                object(&[("\"categoryPreferences\"".to_owned(), value.to_owned())])
            }
            87..=92 => (*self.rng.pick(&["\"granted\"", "{}", "[]"])).to_owned(),
            _ => return Some((*self.rng.pick(&["[]", "\"ctx\"", "null"])).to_owned()),
        };
        let mut entries = vec![("\"consent\"".to_owned(), consent)];
        if self.rng.chance(30) {
            entries.push(extra);
        }
        if self.rng.chance(25) {
            entries.push((
                "\"consentManagement\"".to_owned(),
                self.consent_management(),
            ));
        }
        if self.rng.chance(25) {
            let gpc = *self.rng.pick(&["true", "true", "false", "\"true\"", "1"]);
            entries.push(("\"gpc\"".to_owned(), gpc.to_owned()));
        }
        if self.rng.chance(40) {
            entries.push(("\"location\"".to_owned(), self.location()));
        }
        self.rng.shuffle(&mut entries);
        Some(object(&entries))
    }

    /// Segment's `context.location`: countries and regions by name or code, some nowhere
    /// configured, some not strings.
    fn location(&mut self) -> String {
        let country = *self.rng.pick(&[
            "\"Germany\"",
            "\"FR\"",
            "\"United States\"",
            "\"us\"",
            "\"USA\"",
            "\"Brazil\"",
            "\"Atlantis\"",
            "null",
        ]);
        let mut entries = vec![("\"country\"".to_owned(), country.to_owned())];
        if self.rng.chance(70) {
            let region = *self.rng.pick(&[
                "\"California\"",
                "\"CA\"",
                "\"US-CA\"",
                "\"Texas\"",
                "\"tx\"",
                "\"Bavaria\"",
                "\"FR-75\"",
                "3",
            ]);
            entries.push(("\"region\"".to_owned(), region.to_owned()));
        }
        entries.push(("\"city\"".to_owned(), "\"X\"".to_owned()));
        self.rng.shuffle(&mut entries);
        object(&entries)
    }

    /// RudderStack's `consentManagement`: allowed and denied IDs (aliases, category names,
    /// an unknown ID, a non-string), or a value that is not an object.
    fn consent_management(&mut self) -> String {
        if self.rng.chance(10) {
            return (*self.rng.pick(&["null", "[]", "\"oneTrust\""])).to_owned();
        }
        let mut names: Vec<&str> = self.aliases.clone();
        names.extend(self.categories.iter().copied());
        names.push(UNKNOWN_ID);
        let ids = |rng: &mut Rng| -> String {
            if rng.chance(8) {
                return (*rng.pick(&["null", "\"C0002\"", "{}"])).to_owned();
            }
            let mut items: Vec<String> = names
                .iter()
                .filter(|_| rng.chance(35))
                .map(|n| format!("{n:?}"))
                .collect();
            if rng.chance(10) {
                items.push("5".to_owned());
            }
            format!("[{}]", items.join(","))
        };
        let mut entries = vec![
            ("\"provider\"".to_owned(), "\"oneTrust\"".to_owned()),
            (
                "\"resolutionStrategy\"".to_owned(),
                (*self.rng.pick(&["\"and\"", "\"or\""])).to_owned(),
            ),
        ];
        if self.rng.chance(85) {
            entries.push(("\"allowedConsentIds\"".to_owned(), ids(&mut self.rng)));
        }
        if self.rng.chance(60) {
            entries.push(("\"deniedConsentIds\"".to_owned(), ids(&mut self.rng)));
        }
        if self.rng.chance(3) {
            entries.push(("\"deniedConsentIds\"".to_owned(), "[]".to_owned()));
        }
        self.rng.shuffle(&mut entries);
        object(&entries)
    }

    pub(super) fn integrations(&mut self) -> Option<String> {
        match self.rng.below(100) {
            0..=54 => None,
            55..=94 => {
                let mut entries: Vec<(String, String)> = Vec::new();
                for _ in 0..self.rng.range(1, 3) {
                    let name = if self.rng.chance(60) {
                        *self.rng.pick(&self.integrations)
                    } else {
                        *self.rng.pick(&OTHER_INTEGRATIONS)
                    };
                    if entries.iter().any(|(k, _)| decoded(k) == *name) {
                        continue;
                    }
                    let value = *self.rng.pick(&[
                        "true",
                        "false",
                        "false",
                        "{}",
                        "{\"x\":1}",
                        "\"no\"",
                        "1",
                    ]);
                    entries.push((self.key(name), value.to_owned()));
                }
                if self.rng.chance(35) {
                    let all = *self.rng.pick(&["false", "false", "true", "\"false\""]);
                    entries.push(("\"All\"".to_owned(), all.to_owned()));
                }
                self.rng.shuffle(&mut entries);
                Some(object(&entries))
            }
            _ => Some((*self.rng.pick(&["false", "[]", "\"none\""])).to_owned()),
        }
    }

    pub(super) fn event_entries(&mut self, record_time: i64) -> Vec<(String, String)> {
        let mut entries = vec![
            ("\"type\"".to_owned(), "\"track\"".to_owned()),
            ("\"messageId\"".to_owned(), "\"m-1\"".to_owned()),
        ];
        let user_id = self.identifier();
        let mut anonymous_id = self.identifier();
        if user_id.is_none() && anonymous_id.is_none() && self.rng.chance(70) {
            anonymous_id = Some(format!("{:?}", self.id()));
        }
        if let Some(id) = user_id {
            entries.push(("\"userId\"".to_owned(), id));
        }
        if let Some(id) = anonymous_id {
            entries.push(("\"anonymousId\"".to_owned(), id));
        }
        if let Some(timestamp) = self.event_timestamp(record_time) {
            entries.push(("\"timestamp\"".to_owned(), timestamp));
        }
        if let Some(context) = self.stamp() {
            entries.push(("\"context\"".to_owned(), context));
        }
        if let Some(integrations) = self.integrations() {
            entries.push(("\"integrations\"".to_owned(), integrations));
        }
        let properties = match (self.max_event_bytes, self.rng.chance(30)) {
            (Some(max), true) => {
                let pad = self.rng.range(max as i64 / 2, max as i64 + 50) as usize;
                format!("{{\"pad\":\"{}\"}}", "x".repeat(pad))
            }
            _ if self.rng.chance(3) => exotic_json(&mut self.rng),
            _ => r#"{"plan":"pro","items":[1,2.5,{"k":null}]}"#.to_owned(),
        };
        entries.push(("\"properties\"".to_owned(), properties));
        entries
    }

    pub(super) fn valid_event(&mut self, record_time: i64) -> Vec<u8> {
        let mut entries = self.event_entries(record_time);
        if self.rng.chance(5) {
            // Fields nobody reads may repeat.
            entries.push(("\"event\"".to_owned(), "\"a\"".to_owned()));
            entries.push(("\"event\"".to_owned(), "\"b\"".to_owned()));
        }
        self.rng.shuffle(&mut entries);
        self.spaced(object(&entries)).into_bytes()
    }

    pub(super) fn malformed_event(&mut self) -> (Option<Vec<u8>>, &'static str) {
        let record_time = self.now;
        let mut entries = self.event_entries(record_time);
        let id = format!("{:?}", self.id());
        let category = self.categories.first().copied().unwrap_or("analytics");
        let name = *self.rng.pick(&self.integrations);
        let at = self.timestamp_text(record_time);
        let duplicate = |key: &str, value: String| (key.to_owned(), value);
        match self.rng.below(24) {
            0 => return (None, "malformed: null value"),
            1 => {
                let text = object(&entries);
                return (
                    Some(text.as_bytes()[..text.len() / 2].to_vec()),
                    "malformed: truncated",
                );
            }
            2 => {
                let text = object(&entries) + " {}";
                return (Some(text.into_bytes()), "malformed: trailing bytes");
            }
            3 => entries.push(duplicate("\"bad\"", "{\"a\":tru}".to_owned())),
            4 => {
                let mut bytes = object(&entries).into_bytes();
                bytes.pop();
                bytes.extend_from_slice(b",\"note\":\"\xff\"}");
                return (Some(bytes), "malformed: invalid UTF-8 in a skipped field");
            }
            5 => return (Some(b"[1,2]".to_vec()), "malformed: not an object"),
            6 => return (Some(b"\"text\"".to_vec()), "malformed: not an object"),
            7 => entries.push(duplicate("\"userId\"", id)),
            8 => entries.push(duplicate("\"anonymousId\"", id)),
            9 => entries.push(duplicate("\"us\\u0065rId\"", id)),
            10 => entries.push(duplicate("\"timestamp\"", at)),
            11 => entries.push(duplicate("\"context\"", "{}".to_owned())),
            12 => entries.push(duplicate(
                "\"context\"",
                r#"{"consent":{"categoryPreferences":{}},"consent":{}}"#.to_owned(),
            )),
            13 => entries.push(duplicate(
                "\"context\"",
                r#"{"consent":{"categoryPreferences":{},"categoryPreferences":{}}}"#.to_owned(),
            )),
            14 => entries.push(duplicate(
                "\"context\"",
                format!(
                    r#"{{"consent":{{"categoryPreferences":{{"{category}":true,"{category}":false}}}}}}"#
                ),
            )),
            15 => entries.push(duplicate("\"integrations\"", "{}".to_owned())),
            16 => entries.push(duplicate(
                "\"integrations\"",
                r#"{"All":true,"All":false}"#.to_owned(),
            )),
            17 => entries.push(duplicate(
                "\"integrations\"",
                format!(r#"{{"{name}":true,"{name}":false}}"#),
            )),
            18 => {
                // Nothing read repeats: valid.
                entries.retain(|(k, _)| k != "\"context\"" && k != "\"integrations\"");
                entries.push(duplicate(
                    "\"context\"",
                    r#"{"ip":"1","ip":"2","consent":{"categoryPreferences":{"marketing":true,"marketing":false}}}"#
                        .to_owned(),
                ));
                entries.push(duplicate(
                    "\"integrations\"",
                    r#"{"Mixpanel":true,"Mixpanel":false}"#.to_owned(),
                ));
            }
            19 | 20 => entries.retain(|(k, _)| k != "\"userId\"" && k != "\"anonymousId\""),
            21 => {
                entries.retain(|(k, _)| k != "\"userId\"" && k != "\"anonymousId\"");
                entries.push(duplicate("\"userId\"", "\"\"".to_owned()));
                entries.push(duplicate("\"anonymousId\"", "7".to_owned()));
            }
            22 => return (Some(b"  \n".to_vec()), "malformed: empty"),
            _ => entries.push(duplicate("\"note\"", "\"tab\there\"".to_owned())),
        }
        // Some of the above only duplicate a key the event already lacks: then it is valid.
        self.rng.shuffle(&mut entries);
        (Some(object(&entries).into_bytes()), "maybe malformed")
    }

    /// `name` as a JSON object key, now and then with its first character escaped.
    pub(super) fn key(&mut self, name: &str) -> String {
        if self.rng.chance(6) {
            let first = name.chars().next().expect("names are not empty");
            let rest: String = name.chars().skip(1).collect();
            format!("\"\\u{:04x}{}\"", first as u32, rest.escape_default())
        } else {
            format!("{name:?}")
        }
    }

    /// Now and then, the same JSON with whitespace after every `,` and `:` outside strings
    /// (generated strings hold neither outside escapes that matter here).
    pub(super) fn spaced(&mut self, json: String) -> String {
        if !self.rng.chance(5) {
            return json;
        }
        let mut out = String::with_capacity(json.len() * 2);
        let mut in_string = false;
        let mut escaped = false;
        for c in json.chars() {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' if in_string => escaped = true,
                '"' => in_string = !in_string,
                ',' | ':' if !in_string => out.push_str(" \n "),
                _ => {}
            }
        }
        out
    }

    /// `ms` as a JSON string in one of several RFC 3339 spellings; the time it represents
    /// is pooled (a spelling without a fraction drops the milliseconds).
    pub(super) fn timestamp_text(&mut self, ms: i64) -> String {
        let (text, represented) = match self.rng.below(20) {
            0..=9 => (rfc3339(ms, 0, ".mmm", 'T', "Z"), ms),
            10..=11 => (rfc3339(ms, 0, "", 'T', "Z"), ms - ms.rem_euclid(1_000)),
            12 => (rfc3339(ms, 0, ".mmm999", 'T', "Z"), ms),
            13 => (rfc3339(ms, 330, ".mmm", 'T', "+05:30"), ms),
            14 => (rfc3339(ms, -180, ".mmm", 'T', "-03:00"), ms),
            15 => (rfc3339(ms, 0, ".mmm", 't', "z"), ms),
            16 => (rfc3339(ms, 0, ".mmm", ' ', "Z"), ms),
            17 => (rfc3339(ms, 0, ".m", 'T', "Z"), ms - ms.rem_euclid(100)),
            18 if self.rng.chance(10) => {
                self.odd_separator = true;
                (
                    rfc3339(ms, 0, ".mmm", *self.rng.pick(&['X', '_', '+']), "Z"),
                    ms,
                )
            }
            _ => (rfc3339(ms, 0, ".mmm000", 'T', "+00:00"), ms),
        };
        self.pool.push(represented);
        format!("\"{text}\"")
    }
}
