//! Seeded cases: a config with a few destinations, and consent records and events
//! interleaved in time. Times come from a small grid around a moving "now", so that equal
//! times, same-millisecond events, late events, stale and future-dated records and a history
//! window that matters are all common.

use std::fmt::Write;

#[path = "generate/events.rs"]
mod events;
#[path = "generate/records.rs"]
mod records;

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
    /// `[consent.aliases]`: alias and category.
    pub aliases: Vec<(&'static str, &'static str)>,
    /// `[[jurisdiction]]`, and `consent.default_jurisdiction`.
    pub jurisdictions: Vec<GenJurisdiction>,
    pub default_jurisdiction: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct GenJurisdiction {
    pub name: &'static str,
    pub codes: &'static [&'static str],
    pub opt_out: bool,
    pub granted_by_default: Vec<&'static str>,
    pub gpc_denies: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct GenDestination {
    pub name: &'static str,
    pub integration_names: Option<Vec<&'static str>>,
    pub categories: Vec<&'static str>,
    pub match_mode: Option<&'static str>,
    pub channel: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Record {
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        kafka_ts: Option<i64>,
        now: i64,
        note: &'static str,
        /// A record of the privacy-requests topic, not of the consent topic.
        privacy: bool,
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
        if let Some(when) = self.when_missing.filter(|_| self.jurisdictions.is_empty()) {
            writeln!(text, "when_missing = \"{when}\"").unwrap();
        }
        if let Some(default) = self.default_jurisdiction {
            writeln!(text, "default_jurisdiction = {default:?}").unwrap();
        }
        if let Some(window) = &self.history_window {
            writeln!(text, "history_window = \"{window}\"").unwrap();
        }
        if let Some(changes) = self.history_max_changes {
            writeln!(text, "history_max_changes = {changes}").unwrap();
        }
        if !self.aliases.is_empty() {
            text.push_str("\n[consent.aliases]\n");
            for (alias, category) in &self.aliases {
                writeln!(text, "{alias:?} = {category:?}").unwrap();
            }
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
            if let Some(channel) = dest.channel {
                writeln!(text, "channel = {channel:?}").unwrap();
            }
        }
        let list = |names: &[&str]| {
            let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        for j in &self.jurisdictions {
            write!(
                text,
                "\n[[jurisdiction]]\nname = {:?}\nmatch = {}\nmodel = \"{}\"\ngpc_denies = {}\n",
                j.name,
                list(j.codes),
                if j.opt_out { "opt-out" } else { "opt-in" },
                list(&j.gpc_denies),
            )
            .unwrap();
            if j.opt_out {
                writeln!(text, "granted_by_default = {}", list(&j.granted_by_default)).unwrap();
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

    pub fn channels(&self) -> Vec<&'static str> {
        let mut all = Vec::new();
        for channel in self.destinations.iter().filter_map(|d| d.channel) {
            if !all.contains(&channel) {
                all.push(channel);
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
/// OneTrust-style IDs an alias may give a category (`marketing` included); `C9999` is never
/// configured.
const CMP_IDS: [&str; 5] = ["C0002", "C0003", "C0004", "C0005", "C0007"];
const UNKNOWN_ID: &str = "C9999";
const CHANNELS: [&str; 2] = ["email", "sms"];
/// Jurisdictions a config may declare: name, codes, opt-out.
const JURISDICTIONS: [(&str, &[&str], bool); 3] = [
    ("EU", &["DE", "FR"], false),
    ("California", &["US-CA"], true),
    ("US", &["US"], true),
];
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
    let mut config = g.config();
    g.jurisdictions(&mut config);
    g.categories = config.categories();
    g.aliases = config.aliases.iter().map(|(alias, _)| *alias).collect();
    g.channels = config.channels();
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
    /// The configured aliases and channels.
    aliases: Vec<&'static str>,
    channels: Vec<&'static str>,
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
            aliases: Vec::new(),
            channels: Vec::new(),
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
                    channel: if rng.chance(25) {
                        Some(*rng.pick(&CHANNELS))
                    } else {
                        None
                    },
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
            jurisdictions: Vec::new(),
            default_jurisdiction: None,
            aliases: if rng.chance(50) {
                let mut categories = CATEGORIES.to_vec();
                categories.push(UNCONFIGURED);
                let mut aliases = Vec::new();
                for id in CMP_IDS {
                    if rng.chance(60) {
                        aliases.push((id, *rng.pick(&categories)));
                    }
                }
                aliases
            } else {
                Vec::new()
            },
        }
    }

    /// Jurisdictions in half the configs, over the categories some destination needs.
    fn jurisdictions(&mut self, config: &mut GenConfig) {
        if !self.rng.chance(50) {
            return;
        }
        let categories = config.categories();
        let rng = &mut self.rng;
        for &(name, codes, opt_out) in &JURISDICTIONS {
            if !rng.chance(70) {
                continue;
            }
            let some = |rng: &mut Rng| -> Vec<&'static str> {
                categories
                    .iter()
                    .copied()
                    .filter(|_| rng.chance(50))
                    .collect()
            };
            config.jurisdictions.push(GenJurisdiction {
                name,
                codes,
                opt_out,
                granted_by_default: some(rng),
                gpc_denies: some(rng),
            });
        }
        if !config.jurisdictions.is_empty() && rng.chance(60) {
            config.default_jurisdiction = Some(rng.pick(&config.jurisdictions).name);
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
            } else if self.rng.chance(3) {
                self.suppression_episode(&mut steps);
            } else if self.rng.chance(8) {
                steps.push(self.privacy_request());
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
