//! Seeded cases: a config with a few destinations, and consent records and events
//! interleaved in time. Times come from a small grid around a moving "now", so that equal
//! times, same-millisecond events, late events, stale and future-dated records and a history
//! window that matters are all common.

use std::fmt::Write;

/// SplitMix64: small, seedable, good enough to spread cases.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// The seed of case `index` of a run seeded with `seed`.
pub fn case_seed(seed: u64, index: u64) -> u64 {
    Rng::new(seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
}

#[derive(Debug, Clone)]
pub struct Case {
    /// The seed of its config (shared by a group of cases), and of its steps.
    pub config_seed: u64,
    pub seed: u64,
    pub config: GenConfig,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub destinations: Vec<GenDestination>,
    pub when_missing: Option<&'static str>,
    pub history_window: Option<String>,
    pub history_max_changes: Option<usize>,
    pub max_event_bytes: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct GenDestination {
    pub name: &'static str,
    pub integration_names: Option<Vec<&'static str>>,
    pub categories: Vec<&'static str>,
    pub match_mode: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Record {
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        kafka_ts: Option<i64>,
        now: i64,
        note: &'static str,
    },
    Event {
        value: Option<Vec<u8>>,
        kafka_ts: Option<i64>,
        now: i64,
        /// The periodic history sweep runs at `now`, just before the event is judged.
        sweep: bool,
        note: &'static str,
    },
}

impl GenConfig {
    pub fn toml(&self) -> String {
        let mut text = String::from(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\n\n[input]\ntopics = [\"events.raw\"]\n",
        );
        if let Some(bytes) = self.max_event_bytes {
            writeln!(text, "max_event_bytes = {bytes}").unwrap();
        }
        text.push_str("\n[consent]\ntopic = \"consent.states\"\n");
        if let Some(when) = self.when_missing {
            writeln!(text, "when_missing = \"{when}\"").unwrap();
        }
        if let Some(window) = &self.history_window {
            writeln!(text, "history_window = \"{window}\"").unwrap();
        }
        if let Some(changes) = self.history_max_changes {
            writeln!(text, "history_max_changes = {changes}").unwrap();
        }
        text.push_str("\n[dead_letter]\ntopic = \"events.dead-letter\"\n");
        for dest in &self.destinations {
            let list = |names: &[&str]| {
                let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
                format!("[{}]", quoted.join(", "))
            };
            write!(
                text,
                "\n[[destination]]\nname = {:?}\ntopic = \"dest.{}\"\ncategories = {}\n",
                dest.name,
                dest.name.replace(' ', "-"),
                list(&dest.categories)
            )
            .unwrap();
            if let Some(mode) = dest.match_mode {
                writeln!(text, "match = \"{mode}\"").unwrap();
            }
            if let Some(names) = &dest.integration_names {
                writeln!(text, "integration_names = {}", list(names)).unwrap();
            }
        }
        text
    }

    pub fn window_ms(&self) -> i64 {
        match &self.history_window {
            None => 7 * 86_400_000,
            Some(text) => {
                let split = text.find(|c: char| !c.is_ascii_digit()).unwrap();
                let n: i64 = text[..split].parse().unwrap();
                n * match &text[split..] {
                    "ms" => 1,
                    "s" => 1_000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    _ => 86_400_000,
                }
            }
        }
    }

    /// Every category some destination names.
    pub fn categories(&self) -> Vec<&'static str> {
        let mut all = Vec::new();
        for dest in &self.destinations {
            for c in &dest.categories {
                if !all.contains(c) {
                    all.push(*c);
                }
            }
        }
        all
    }

    pub fn integration_names(&self) -> Vec<&'static str> {
        let mut all = Vec::new();
        for dest in &self.destinations {
            for n in dest.integration_names.clone().unwrap_or(vec![dest.name]) {
                if !all.contains(&n) {
                    all.push(n);
                }
            }
        }
        all
    }
}

impl Step {
    pub fn now(&self) -> i64 {
        match self {
            Step::Record { now, .. } | Step::Event { now, .. } => *now,
        }
    }
}

/// 2026-11-22T10:00:00Z, the README's example time.
pub const T0: i64 = 1_795_341_600_000;

/// Categories a destination may need; `marketing` is never configured (records and stamps
/// mention it).
const CATEGORIES: [&str; 4] = ["analytics", "advertising", "functional", "personalization"];
const UNCONFIGURED: &str = "marketing";
const DESTINATIONS: [(&str, &str); 4] = [
    ("Amplitude", "Amplitude (Actions)"),
    ("Google Ads", "Google AdWords New"),
    ("Braze", "braze-cloud"),
    ("Warehouse", "S3"),
];
/// Keys of `integrations` besides the configured names: case variants and others.
const OTHER_INTEGRATIONS: [&str; 4] = ["amplitude", "google ads", "Mixpanel", "all"];
/// The last is longer than the 512 bytes an identifier may have.
const IDENTIFIERS: [&str; 6] = ["u1", "a1", "u2", "a2", "\u{e9}1", LONG_IDENTIFIER];
const LONG_IDENTIFIER: &str = "lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll";

/// The note of a step with a date-time whose separator is none of `T`, `t` or a space.
pub const ODD_SEPARATOR: &str = "date-time with an odd separator";

/// One generated case: its config (and time unit and identifiers) from `config_seed`, its
/// steps from `seed`.
pub fn case(config_seed: u64, seed: u64) -> Case {
    let mut g = Gen::new(config_seed);
    let config = g.config();
    g.categories = config.categories();
    g.integrations = config.integration_names();
    g.window = config.window_ms();
    g.max_changes = config.history_max_changes;
    g.rng = Rng::new(seed);
    let steps = g.steps();
    Case {
        config_seed,
        seed,
        config,
        steps,
    }
}

struct Gen {
    rng: Rng,
    unit: i64,
    window: i64,
    now: i64,
    /// Times used so far (states, record times, event times): reused for ties.
    pool: Vec<i64>,
    ids: Vec<&'static str>,
    categories: Vec<&'static str>,
    integrations: Vec<&'static str>,
    /// The grants last written for each identifier, to re-send them.
    last_grants: Vec<(&'static str, String)>,
    max_event_bytes: Option<usize>,
    /// A date-time with a separator RFC 3339 does not allow was written into this step.
    odd_separator: bool,
    max_changes: Option<usize>,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut rng = Rng::new(seed);
        let unit = *rng.pick(&[1, 3, 250, 1_000, 60_000, 3_600_000]);
        let mut ids: Vec<&'static str> = IDENTIFIERS.to_vec();
        rng.shuffle(&mut ids);
        ids.truncate(rng.range(1, 3) as usize);
        let now = T0 + rng.range(0, 1_000) * unit;
        Gen {
            rng,
            unit,
            window: 0,
            now,
            pool: vec![now],
            ids,
            categories: Vec::new(),
            integrations: Vec::new(),
            last_grants: Vec::new(),
            max_event_bytes: None,
            odd_separator: false,
            max_changes: None,
        }
    }

    fn config(&mut self) -> GenConfig {
        let rng = &mut self.rng;
        let mut names = DESTINATIONS.to_vec();
        rng.shuffle(&mut names);
        let count = rng.range(1, 4) as usize;
        let known = rng.range(1, 4) as usize;
        let destinations = names[..count]
            .iter()
            .map(|&(name, alias)| {
                let categories = if rng.chance(12) {
                    Vec::new()
                } else {
                    let mut cats: Vec<&str> = CATEGORIES[..known]
                        .iter()
                        .copied()
                        .filter(|_| rng.chance(50))
                        .collect();
                    if cats.is_empty() {
                        cats.push(CATEGORIES[rng.below(known as u64) as usize]);
                    }
                    cats
                };
                GenDestination {
                    name,
                    integration_names: match rng.below(4) {
                        0 => Some(vec![name, alias]),
                        1 => Some(vec![alias]),
                        _ => None,
                    },
                    categories,
                    match_mode: *rng.pick(&[None, None, Some("all"), Some("any"), Some("any")]),
                }
            })
            .collect();
        // Windows of a few time units make the history bounds bite.
        let window_units = *rng.pick(&[0, 1, 2, 3, 5, 10, 30, 1_000]);
        let history_window = match rng.below(6) {
            0 => None,
            _ => Some(duration(window_units * self.unit)),
        };
        self.max_event_bytes = rng.chance(15).then(|| rng.range(150, 600) as usize);
        GenConfig {
            destinations,
            when_missing: *rng.pick(&[None, Some("deny"), Some("allow"), Some("allow")]),
            history_window,
            history_max_changes: *rng.pick(&[None, Some(0), Some(1), Some(1), Some(2), Some(3)]),
            max_event_bytes: self.max_event_bytes,
        }
    }

    fn steps(&mut self) -> Vec<Step> {
        // A burst of re-sent choices counts as one: events still follow it.
        let count = self.rng.range(2, 12);
        let mut steps = Vec::new();
        for _ in 0..count {
            self.advance();
            if self.rng.chance(5) {
                self.resend_burst(&mut steps);
            } else if steps.is_empty() || self.rng.chance(50) {
                steps.push(self.record());
            } else {
                steps.push(self.event());
            }
            if std::mem::take(&mut self.odd_separator) {
                if let Some(Step::Record { note, .. } | Step::Event { note, .. }) = steps.last_mut()
                {
                    *note = ODD_SEPARATOR;
                }
            }
        }
        steps
    }

    fn advance(&mut self) {
        let step = match self.rng.below(20) {
            0..=7 => 0,
            8..=13 => self.unit,
            14..=16 => self.rng.range(2, 5) * self.unit,
            17..=18 => self.rng.range(10, 50) * self.unit,
            _ => self.window + self.unit * self.rng.range(1, 3),
        };
        self.now += step;
    }

    fn pooled(&mut self) -> i64 {
        *self.rng.pick(&self.pool)
    }

    /// A Kafka timestamp near now: mostly now, some in the past (late), a few ahead of the
    /// reader's clock, a few missing.
    fn kafka_ts(&mut self) -> Option<i64> {
        let ts = match self.rng.below(25) {
            0 => return None,
            1..=11 => self.now,
            12..=16 => self.now - self.rng.range(1, 3) * self.unit,
            17..=18 => self.now - self.window - self.rng.range(0, 2) * self.unit,
            19..=20 => self.pooled(),
            21 => self.now + self.unit,
            22 => self.now - 1,
            _ => self.pooled() + *self.rng.pick(&[-1, 1]),
        };
        self.pool.push(ts);
        Some(ts)
    }

    fn id(&mut self) -> &'static str {
        let i = self.rng.below(self.ids.len() as u64) as usize;
        self.ids[i]
    }

    fn record(&mut self) -> Step {
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
        }
    }

    /// A few identical choices re-sent in a row, to reach the bound on all kept states.
    fn resend_burst(&mut self, steps: &mut Vec<Step>) {
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
            });
        }
        self.remember_grants(id, grants);
    }

    fn remember_grants(&mut self, id: &'static str, grants: String) {
        self.last_grants.retain(|(i, _)| *i != id);
        self.last_grants.push((id, grants));
    }

    /// A `categoryPreferences` object (for records and stamps).
    fn grants(&mut self, full: bool) -> String {
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
        self.rng.shuffle(&mut entries);
        object(&entries)
    }

    fn valid_record(&mut self, id: &'static str, record_time: i64) -> (Vec<u8>, &'static str) {
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

    fn malformed_record(&mut self, record_time: i64) -> (Vec<u8>, &'static str) {
        let category = self.categories.first().copied().unwrap_or("analytics");
        let at = self.timestamp_text(record_time);
        let prefs = self.grants(false);
        let text = match self.rng.below(24) {
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
            _ => r#"{"categoryPreferences":"x","updatedAt":17}"#.to_owned(),
        };
        (text.into_bytes(), "malformed")
    }

    fn event(&mut self) -> Step {
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

    fn identifier(&mut self) -> Option<String> {
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

    fn event_timestamp(&mut self, record_time: i64) -> Option<String> {
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

    fn stamp(&mut self) -> Option<String> {
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
        self.rng.shuffle(&mut entries);
        Some(object(&entries))
    }

    fn integrations(&mut self) -> Option<String> {
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

    fn event_entries(&mut self, record_time: i64) -> Vec<(String, String)> {
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

    fn valid_event(&mut self, record_time: i64) -> Vec<u8> {
        let mut entries = self.event_entries(record_time);
        if self.rng.chance(5) {
            // Fields nobody reads may repeat.
            entries.push(("\"event\"".to_owned(), "\"a\"".to_owned()));
            entries.push(("\"event\"".to_owned(), "\"b\"".to_owned()));
        }
        self.rng.shuffle(&mut entries);
        self.spaced(object(&entries)).into_bytes()
    }

    fn malformed_event(&mut self) -> (Option<Vec<u8>>, &'static str) {
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
    fn key(&mut self, name: &str) -> String {
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
    fn spaced(&mut self, json: String) -> String {
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
    fn timestamp_text(&mut self, ms: i64) -> String {
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

/// Unusual but plain JSON for a field nobody reads. (Not generated: a lone surrogate escape,
/// a number beyond f64 or nesting deeper than 128, which src accepts in skipped fields and
/// `serde_json::Value`, the model's parser, rejects; see docs/reference-model.md.)
fn exotic_json(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => r#"{"n":123456789012345678901234567890,"e":-0.0e-0}"#.to_owned(),
        1 => r#"{"s":"\ud83d\ude00 \u00e9\/\b\f\n\r\t"}"#.to_owned(),
        _ => format!("{}{}", "[".repeat(100), "]".repeat(100)),
    }
}

/// A generated key without its quotes and `\\uXXXX` escapes (only such escapes are generated).
fn decoded(key: &str) -> String {
    let inner = &key[1..key.len() - 1];
    match inner.strip_prefix("\\u") {
        Some(rest) => {
            let code = u32::from_str_radix(&rest[..4], 16).expect("four hex digits");
            format!(
                "{}{}",
                char::from_u32(code).expect("a character"),
                &rest[4..]
            )
        }
        None => inner.to_owned(),
    }
}

/// A JSON object from already-encoded keys and values (so keys may repeat).
fn object(entries: &[(String, String)]) -> String {
    let mut text = String::with_capacity(entries.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    text.push('{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(key);
        text.push(':');
        text.push_str(value);
    }
    text.push('}');
    text
}

/// A duration in the config's syntax, in the largest unit that divides it.
fn duration(ms: i64) -> String {
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms > 0 && ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

/// RFC 3339 for `ms` shown at an offset of `offset_minutes`, with the fraction spelled as
/// `fraction` (`.mmm`, `.m`, `.mmm999`, ...: `m` digits are the milliseconds).
pub fn rfc3339(ms: i64, offset_minutes: i64, fraction: &str, sep: char, zone: &str) -> String {
    let local = ms + offset_minutes * 60_000;
    let (days, rest) = (local.div_euclid(86_400_000), local.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1_000 % 60,
        rest % 1_000,
    );
    let digits = format!("{milli:03}");
    let m_count = fraction.matches('m').count();
    let fraction = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{}{}", &digits[..m_count], &fraction[1 + m_count..])
    };
    format!("{y:04}-{m:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{fraction}{zone}")
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
