//! `consent-enforcer explain`: for every destination, deliver or drop, the reason, and what
//! decided it; the same verdicts the service reaches (tests/differential.rs checks that on
//! generated cases).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{binary, unique};

const CONFIG: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9"
[input]
topics = ["events.raw"]
[consent]
topic = "consent.states"
default_jurisdiction = "EU"
[consent.aliases]
C0004 = "advertising"
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
[[destination]]
name = "newsletter"
topic = "dest.newsletter"
categories = []
channel = "email"
[[jurisdiction]]
name = "EU"
match = ["DE", "FR"]
model = "opt-in"
[[jurisdiction]]
name = "California"
match = ["US-CA"]
model = "opt-out"
granted_by_default = ["analytics", "advertising"]
gpc_denies = ["advertising"]
"#;

struct Files(PathBuf);

impl Files {
    fn new() -> Files {
        let dir = std::env::temp_dir().join(unique("explain"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("enforcer.toml"), CONFIG).unwrap();
        Files(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn explain(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .arg("explain")
            .arg("--config")
            .arg(self.0.join("enforcer.toml"))
            .args(args)
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .output()
            .expect("run the binary")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let output = self.explain(&all);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).expect("explain --format json prints JSON")
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn verdicts(json: &serde_json::Value) -> Vec<(String, String, Option<String>)> {
    json["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["verdict"].as_str().unwrap().to_owned(),
                d["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn v(name: &str, verdict: &str, reason: Option<&str>) -> (String, String, Option<String>) {
    (
        name.to_owned(),
        verdict.to_owned(),
        reason.map(str::to_owned),
    )
}

#[test]
fn explain_names_the_jurisdiction_gpc_and_each_sources_say() {
    let files = Files::new();
    let event = files.write(
        "event.json",
        r#"{"userId":"u1","messageId":"m1","timestamp":"2026-11-22T10:00:00Z","context":{"gpc":true,"location":{"country":"United States","region":"California"},"consentManagement":{"allowedConsentIds":["C0004"]}}}"#,
    );
    let state = files.write(
        "state.json",
        r#"{"categoryPreferences":{"analytics":true,"advertising":true},"subscriptions":{"email":"subscribed"},"updatedAt":"2026-11-01T00:00:00Z"}"#,
    );
    let at = "2026-11-22T10:05:00Z";
    let args = ["--event", path(&event), "--state", path(&state), "--at", at];
    let json = files.json(&args);
    assert_eq!(
        verdicts(&json),
        [
            v("amplitude", "drop", Some("denied")),
            v("ads", "drop", Some("denied")),
            v("newsletter", "deliver", None),
        ]
    );
    assert_eq!(json["jurisdiction"]["name"], "California");
    assert_eq!(json["gpc"]["denies"], serde_json::json!(["advertising"]));
    let analytics = &json["destinations"][0]["categories"][0];
    assert_eq!(analytics["state"], true);
    assert_eq!(analytics["consentManagement"], false);
    assert_eq!(json["destinations"][2]["channel"]["subscribed"], true);

    let text = files.explain(&args);
    assert_eq!(text.status.code(), Some(0));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("jurisdiction: California"), "{text}");
    assert!(text.contains("ads -> dest.ads: drop (denied)"), "{text}");
    assert!(text.contains("GPC denies it"), "{text}");
    // No identifier or payload is echoed.
    assert!(!text.contains("u1") && !text.contains("m1"), "{text}");
}

#[test]
fn explain_applies_the_defaults_and_the_as_of_rule() {
    let files = Files::new();
    let nobody = files.write(
        "nobody.json",
        r#"{"anonymousId":"a1","timestamp":"2026-11-22T10:00:00Z","context":{"location":{"country":"US","region":"CA"}}}"#,
    );
    let json = files.json(&["--event", path(&nobody), "--at", "2026-11-22T10:00:01Z"]);
    assert_eq!(
        verdicts(&json),
        [
            v("amplitude", "deliver", None),
            v("ads", "deliver", None),
            v("newsletter", "drop", Some("unsubscribed")),
        ]
    );
    // In the EU by default: nothing without a choice.
    let eu = files.write("eu.json", r#"{"anonymousId":"a1"}"#);
    let json = files.json(&["--event", path(&eu)]);
    assert_eq!(json["jurisdiction"]["from"], "consent.default_jurisdiction");
    assert_eq!(
        verdicts(&json)[0],
        v("amplitude", "drop", Some("no_consent"))
    );
    // A grant made after the event does not reach back to it.
    let later = files.write(
        "later.json",
        r#"{"categoryPreferences":{"analytics":true},"updatedAt":"2026-11-22T11:00:00Z"}"#,
    );
    let event = files.write(
        "event.json",
        r#"{"anonymousId":"a1","timestamp":"2026-11-22T10:00:00Z"}"#,
    );
    let args = [
        "--event",
        path(&event),
        "--anonymous-state",
        path(&later),
        "--at",
        "2026-11-22T12:00:00Z",
    ];
    let json = files.json(&args);
    assert_eq!(
        verdicts(&json)[0],
        v("amplitude", "drop", Some("no_consent"))
    );
    assert_eq!(json["at_event_time"], "unknown: no consent");
}

#[test]
fn explain_says_an_event_is_dead_lettered_and_refuses_bad_arguments() {
    let files = Files::new();
    let bad = files.write("bad.json", r#"{"userId":"u1","userId":"u2"}"#);
    assert_eq!(
        files.json(&["--event", path(&bad)])["dead_letter"]["reason"],
        "duplicate_key"
    );
    let event = files.write("event.json", r#"{"anonymousId":"a1"}"#);
    let state = files.write("state.json", r#"{"categoryPreferences":{}}"#);
    let malformed = files.write("malformed.json", r#"{"categoryPreferences":[]}"#);
    for (args, named) in [
        (
            vec!["--event", path(&event), "--state", path(&state)],
            "--state",
        ),
        (
            vec![
                "--event",
                path(&event),
                "--anonymous-state",
                path(&malformed),
            ],
            "--anonymous-state",
        ),
        (vec!["--event", path(&event), "--at", "yesterday"], "--at"),
        (vec!["--event", "/nonexistent/event.json"], "--event"),
    ] {
        let output = files.explain(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(named),
            "{named}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn explain_applies_a_privacy_request() {
    let files = Files::new();
    let event = files.write("event.json", r#"{"userId":"u1","anonymousId":"a1"}"#);
    let state = files.write(
        "state.json",
        r#"{"categoryPreferences":{"analytics":true},"subscriptions":{"email":"subscribed"},"updatedAt":"2026-11-01T00:00:00Z"}"#,
    );
    let suppress = files.write(
        "request.json",
        r#"{"type":"SUPPRESS","requestedAt":"2026-11-20T00:00:00Z"}"#,
    );
    let args = [
        "--event",
        path(&event),
        "--state",
        path(&state),
        "--request",
        path(&suppress),
    ];
    let json = files.json(&args);
    assert_eq!(json["suppressed"], true);
    assert!(verdicts(&json)
        .iter()
        .all(|(_, verdict, reason)| verdict == "drop" && reason.as_deref() == Some("suppressed")));
    let text = String::from_utf8_lossy(&files.explain(&args).stdout).into_owned();
    assert!(text.contains("suppressed by a privacy request"), "{text}");
    // Lifted: judged by consent again.
    let lifted = files.write("lifted.json", r#"{"type":"UNSUPPRESS"}"#);
    let json = files.json(&[
        "--event",
        path(&event),
        "--state",
        path(&state),
        "--request",
        path(&lifted),
    ]);
    assert_eq!(verdicts(&json)[0], v("amplitude", "deliver", None));
    let unknown = files.write("unknown.json", r#"{"type":"FORGET"}"#);
    let output = files.explain(&["--event", path(&event), "--request", path(&unknown)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--request"), "{}", stderr(&output));
}
