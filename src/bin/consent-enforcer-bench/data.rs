//! Generated benchmark data: users with consent states over six categories, and Segment-like
//! events of 400 to 1,200 bytes, deterministic from a seed.

pub const CATEGORIES: [&str; 6] = [
    "analytics",
    "advertising",
    "marketing",
    "personalization",
    "functional",
    "sale_of_data",
];

/// Eight destinations: (name, categories, match mode).
pub const DESTINATIONS: [(&str, &[&str], &str); 8] = [
    ("amplitude", &["analytics"], "all"),
    ("mixpanel", &["analytics", "personalization"], "all"),
    ("google-ads", &["advertising"], "all"),
    ("facebook", &["advertising", "sale_of_data"], "all"),
    ("braze", &["marketing", "personalization"], "any"),
    ("intercom", &["functional"], "all"),
    ("optimizely", &["personalization", "analytics"], "any"),
    ("warehouse", &[], "all"),
];

/// Integration names events may mention (the destinations' names capitalised, as Segment
/// does).
pub const INTEGRATIONS: [&str; 4] = ["Amplitude", "Google Ads", "Braze", "Intercom"];

/// xorshift64*: small, fast, repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub fn user_id(n: u64) -> String {
    format!("user-{n:08}")
}

fn anonymous_id(n: u64) -> String {
    format!(
        "anon-{n:08x}-4e1f-9d1c-{:012x}",
        n.wrapping_mul(2_654_435_761)
    )
}

/// What the consent topic holds for one user.
pub enum ConsentRecord {
    State(String),
    /// A state, then a tombstone.
    Deleted(String),
    /// Nothing.
    None,
}

/// The consent of user `n`: 60 % grant a random subset (mostly everything), 25 % deny some,
/// 10 % have no state, 5 % were deleted.
pub fn consent_of(rng: &mut Rng, updated_at: &str) -> ConsentRecord {
    let roll = rng.below(100);
    let mut prefs = Vec::with_capacity(CATEGORIES.len());
    for category in CATEGORIES {
        let granted = if roll < 60 {
            rng.chance(90)
        } else {
            rng.chance(40)
        };
        prefs.push(format!("\"{category}\":{granted}"));
    }
    let value = format!(
        r#"{{"categoryPreferences":{{{}}},"updatedAt":"{updated_at}","source":"cmp","version":3}}"#,
        prefs.join(",")
    );
    match roll {
        0..=84 => ConsentRecord::State(value),
        85..=94 => ConsentRecord::None,
        _ => ConsentRecord::Deleted(value),
    }
}

/// One event: (key, value). About 1 % are malformed. With `full` (`--consent-model full`),
/// 40 % name a location (Germany, or California) and 5 % carry a GPC signal.
pub fn event(rng: &mut Rng, users: u64, id: u64, full: bool) -> (String, Vec<u8>) {
    let user = rng.below(users);
    let key = user_id(user);
    if rng.chance(1) {
        return (key, br#"{"type":"track","userId":"#.to_vec());
    }
    let kind = match rng.below(10) {
        0..=5 => "track",
        6..=8 => "page",
        _ => "identify",
    };
    let identity = if rng.chance(85) {
        format!(
            r#""userId":"{}","anonymousId":"{}""#,
            key,
            anonymous_id(user)
        )
    } else {
        format!(r#""anonymousId":"{}""#, anonymous_id(user))
    };
    let mut context = String::from(
        r#""library":{"name":"analytics.js","version":"4.1.0"},"locale":"en-US","timezone":"Europe/Berlin","userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15","ip":"203.0.113.42","page":{"path":"/pricing","referrer":"https://www.example.com/","title":"Pricing","url":"https://www.example.com/pricing"}"#,
    );
    if full {
        match rng.below(10) {
            0..=1 => context.push_str(r#","location":{"country":"Germany","city":"Berlin"}"#),
            2..=3 => {
                context.push_str(r#","location":{"country":"United States","region":"California"}"#)
            }
            _ => {}
        }
        if rng.chance(5) {
            context.push_str(r#","gpc":true"#);
        }
    }
    if rng.chance(20) {
        let mut prefs = Vec::new();
        for category in CATEGORIES {
            prefs.push(format!("\"{category}\":{}", rng.chance(70)));
        }
        context.push_str(&format!(
            r#","consent":{{"categoryPreferences":{{{}}}}}"#,
            prefs.join(",")
        ));
    }
    let integrations = if rng.chance(15) {
        let name = INTEGRATIONS[rng.below(INTEGRATIONS.len() as u64) as usize];
        if rng.chance(30) {
            format!(r#","integrations":{{"All":false,"{name}":true}}"#)
        } else {
            format!(r#","integrations":{{"{name}":false}}"#)
        }
    } else {
        String::new()
    };
    // Properties padded so values spread over 400 to 1,200 bytes.
    let pad = rng.below(700) as usize;
    let filler: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(pad)
        .collect();
    let value = format!(
        r#"{{"type":"{kind}","event":"Product Viewed",{identity},"messageId":"bench-{id}","timestamp":"{ts}","context":{{{context}}}{integrations},"properties":{{"product_id":"p-{p}","price":19.99,"currency":"EUR","notes":"{filler}"}}}}"#,
        ts = "2026-11-23T10:00:00.000Z",
        p = rng.below(10_000),
    );
    (key, value.into_bytes())
}

/// The enforcer's config for the benchmark topics.
pub fn enforcer_config(
    bootstrap: &str,
    group: &str,
    input: &str,
    consent: &str,
    prefix: &str,
    metrics_port: u16,
    privacy: Option<&str>,
) -> String {
    let mut toml = format!(
        "[kafka]\nbootstrap_servers = \"{bootstrap}\"\ngroup_id = \"{group}\"\n\
         [kafka.producer_properties]\n\"compression.type\" = \"lz4\"\n\"linger.ms\" = \"5\"\n\
         [input]\ntopics = [\"{input}\"]\n\
         [consent]\ntopic = \"{consent}\"\n{default_jurisdiction}\
         [dead_letter]\ntopic = \"{prefix}.dead-letter\"\n\
         [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
        default_jurisdiction = if privacy.is_some() {
            "default_jurisdiction = \"EU\"\n"
        } else {
            ""
        },
    );
    for (name, categories, mode) in DESTINATIONS {
        let categories: Vec<String> = categories.iter().map(|c| format!("\"{c}\"")).collect();
        let integration = name
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ");
        toml.push_str(&format!(
            "\n[[destination]]\nname = \"{name}\"\nintegration_names = [\"{integration}\"]\ntopic = \"{prefix}.dest.{name}\"\ncategories = [{}]\nmatch = \"{mode}\"\n",
            categories.join(", ")
        ));
    }
    if let Some(privacy) = privacy {
        toml.push_str(&format!("{FULL_MODEL}\n[privacy]\ntopic = \"{privacy}\"\n"));
    }
    toml
}

/// `--consent-model full`: an opt-in and an opt-out jurisdiction, with GPC.
const FULL_MODEL: &str = r#"
[[jurisdiction]]
name = "EU"
match = ["AT", "BE", "DE", "ES", "FR", "IT", "NL", "PL", "SE"]
model = "opt-in"

[[jurisdiction]]
name = "US-CA"
match = ["US-CA"]
model = "opt-out"
granted_by_default = ["analytics", "advertising", "sale_of_data"]
gpc_denies = ["advertising", "sale_of_data"]
"#;

/// `--consent-model full`: a privacy request for user `n`, if any (1 % are suppressed, a
/// tenth of them with deletion asked, which the benchmark configures no deletion topic for).
pub fn privacy_request_of(n: u64) -> Option<String> {
    match n % 1000 {
        0 => Some(r#"{"type":"SUPPRESS_WITH_DELETE","requestedAt":"2026-11-21T10:00:00Z"}"#.into()),
        1..=9 => Some(r#"{"type":"SUPPRESS","requestedAt":"2026-11-21T10:00:00Z"}"#.into()),
        _ => None,
    }
}

pub fn destination_topics(prefix: &str) -> Vec<String> {
    let mut topics: Vec<String> = DESTINATIONS
        .iter()
        .map(|(name, _, _)| format!("{prefix}.dest.{name}"))
        .collect();
    topics.push(format!("{prefix}.dead-letter"));
    topics
}
