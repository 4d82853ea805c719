//! Every combination of sources, models, GPC and location, against the rule as the README
//! states it.

use super::*;
use crate::config::Config;
use crate::event::{self, EventView};

const CONFIG: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9"
[input]
topics = ["events.raw"]
[consent]
topic = "consent.states"
default_jurisdiction = "EU"
[dead_letter]
topic = "events.dead-letter"
[[destination]]
name = "amplitude"
topic = "dest.amplitude"
categories = ["analytics"]
[[destination]]
name = "ads"
topic = "dest.ads"
categories = ["advertising"]
[[jurisdiction]]
name = "EU"
match = ["DE", "FR"]
model = "opt-in"
gpc_denies = ["advertising"]
[[jurisdiction]]
name = "US-CA"
match = ["US-CA"]
model = "opt-out"
granted_by_default = ["analytics", "advertising"]
gpc_denies = ["advertising"]
[[jurisdiction]]
name = "US"
match = ["US"]
model = "opt-out"
granted_by_default = ["analytics"]
"#;

struct Fixture {
    vocabulary: Vocabulary,
    law: Law,
}

fn fixture(text: &str) -> Fixture {
    let config = Config::parse(text, "test.toml").unwrap();
    config.validate().unwrap();
    let vocabulary = Vocabulary::from_config(&config);
    let law = Law::from_config(&config, &vocabulary);
    Fixture { vocabulary, law }
}

const ANALYTICS: u8 = 0;
const ADVERTISING: u8 = 1;

impl Fixture {
    fn state(&self, record: &str) -> ConsentState {
        match crate::consent::record::parse_value(Some(record.as_bytes()), 0, &self.vocabulary) {
            Ok(crate::consent::ConsentUpdate::Set(state)) => state,
            other => panic!("{record}: {other:?}"),
        }
    }

    fn view<'a>(&self, event: &'a str) -> EventView<'a> {
        event::parse(Some(event.as_bytes()), 1 << 20, &self.vocabulary).unwrap()
    }

    /// Which of analytics and advertising the grants allow.
    fn allowed(&self, stored: Option<&str>, event: &str) -> (bool, bool) {
        let view = self.view(event);
        let grants = self.law.grants(stored.map(|s| self.state(s)), &view);
        let has = |bit: u8| match grants {
            Grants::Missing(set) | Grants::Granted(set) => set.contains(bit),
            Grants::Unknown => false,
        };
        (has(ANALYTICS), has(ADVERTISING))
    }
}

fn event(context: &str) -> String {
    format!(r#"{{"userId":"u","context":{context}}}"#)
}

#[test]
fn opt_in_grants_nothing_by_default_and_opt_out_its_defaults() {
    let f = fixture(CONFIG);
    let at = |country: &str, region: &str| {
        event(&format!(
            r#"{{"location":{{"country":"{country}","region":"{region}"}}}}"#
        ))
    };
    assert_eq!(f.allowed(None, &at("Germany", "Bavaria")), (false, false));
    assert_eq!(
        f.allowed(None, &at("United States", "California")),
        (true, true)
    );
    assert_eq!(f.allowed(None, &at("US", "CA")), (true, true));
    // Another state of the US: the country's jurisdiction.
    assert_eq!(
        f.allowed(None, &at("United States", "Texas")),
        (true, false)
    );
    // Nowhere configured, or no location: the default jurisdiction (EU, opt-in).
    assert_eq!(f.allowed(None, &at("Brazil", "")), (false, false));
    assert_eq!(f.allowed(None, &event("{}")), (false, false));
}

#[test]
fn an_explicit_choice_beats_the_default_and_the_states_jurisdiction_beats_the_location() {
    let f = fixture(CONFIG);
    let in_california = event(r#"{"location":{"country":"US","region":"California"}}"#);
    // Denied advertising explicitly: not granted whatever the opt-out default.
    let chose = r#"{"categoryPreferences":{"analytics":true,"advertising":false}}"#;
    assert_eq!(f.allowed(Some(chose), &in_california), (true, false));
    // A state that lists nothing grants nothing, under any model.
    assert_eq!(
        f.allowed(Some(r#"{"categoryPreferences":{}}"#), &in_california),
        (false, false)
    );
    // A state made under the EU with advertising granted: GPC there denies advertising.
    let eu = r#"{"categoryPreferences":{"analytics":true,"advertising":true},"jurisdiction":"DE"}"#;
    let gpc_in_texas = event(r#"{"gpc":true,"location":{"country":"US","region":"TX"}}"#);
    assert_eq!(f.allowed(Some(eu), &gpc_in_texas), (true, false));
    // The same state without its jurisdiction: Texas (US) has no gpc_denies.
    let plain = r#"{"categoryPreferences":{"analytics":true,"advertising":true}}"#;
    assert_eq!(f.allowed(Some(plain), &gpc_in_texas), (true, true));
}

#[test]
fn gpc_denies_its_categories_whatever_else_grants_them() {
    let f = fixture(CONFIG);
    let granted = r#"{"categoryPreferences":{"analytics":true,"advertising":true}}"#;
    let california = r#""location":{"country":"United States","region":"California"}"#;
    let with_gpc = event(&format!(r#"{{"gpc":true,{california}}}"#));
    let without = event(&format!(r#"{{"gpc":false,{california}}}"#));
    assert_eq!(f.allowed(Some(granted), &with_gpc), (true, false));
    assert_eq!(f.allowed(Some(granted), &without), (true, true));
    assert_eq!(f.allowed(None, &with_gpc), (true, false));
    // The state's own GPC flag counts too.
    let flagged = r#"{"categoryPreferences":{"analytics":true,"advertising":true},"gpc":true}"#;
    assert_eq!(f.allowed(Some(flagged), &without), (true, false));
    // Only JSON `true` is a signal.
    let string = event(&format!(r#"{{"gpc":"true",{california}}}"#));
    assert_eq!(f.allowed(Some(granted), &string), (true, true));
    // A stamp cannot set GPC or a jurisdiction for the state.
    let stamp = event(&format!(
        r#"{{"consent":{{"categoryPreferences":{{"advertising":true,"gpc":false}}}},{california}}}"#
    ));
    assert_eq!(f.allowed(Some(flagged), &stamp), (false, false));
}

#[test]
fn without_jurisdictions_gpc_and_location_change_nothing() {
    let text = CONFIG
        .split("[[jurisdiction]]")
        .next()
        .unwrap()
        .replace("default_jurisdiction = \"EU\"", "when_missing = \"allow\"");
    let f = fixture(&text);
    let gpc = event(r#"{"gpc":true,"location":{"country":"Germany"}}"#);
    assert_eq!(f.allowed(None, &gpc), (true, true));
    let granted = r#"{"categoryPreferences":{"analytics":true,"advertising":true},"gpc":true,"jurisdiction":"DE"}"#;
    assert_eq!(f.allowed(Some(granted), &gpc), (true, true));
}
