//! The dashboard and the alert rules read only metrics the service exports, and every metric
//! the service exports is in the README's Metrics section.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;

/// Metric names in a text: `consent_enforcer_*` and `process_*` identifiers.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["consent_enforcer_", "process_"]
            .iter()
            .any(|p| text[i..].starts_with(p));
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| i + n);
            names.insert(text[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// The families on `/metrics` with their types, from the `# TYPE` lines.
fn families(metrics: &str) -> Vec<(String, String)> {
    metrics
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// Whether `name` is a series of one of the families (a histogram's `_bucket`, `_sum` and
/// `_count`, a summary's `_sum` and `_count`).
fn exported(name: &str, families: &[(String, String)]) -> bool {
    families.iter().any(|(family, kind)| {
        name == family
            || match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{family}{s}")),
                "summary" => ["_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{family}{s}")),
                _ => false,
            }
    })
}

#[test]
fn the_dashboard_and_the_rules_use_only_exported_metrics_and_the_readme_lists_every_one() {
    let mut s = Scenario::new(
        "deploy-metrics",
        vec![Destination::new("amplitude", &["analytics"])],
    );
    let privacy = format!("{}.privacy", s.consent);
    let audit = format!("{}.audit", s.consent);
    let hold = format!("{}.hold", s.group);
    create_topic(&privacy, 1, true);
    create_topic(&audit, 1, false);
    create_topic(&hold, 2, false);
    s.delivery_extra = format!(
        "guarantee = \"exactly_once\"\ntransactional_id = \"{}-a\"",
        s.group
    );
    s.extra = format!(
        "[privacy]\ntopic = \"{privacy}\"\n[audit]\ntopic = \"{audit}\"\n\
         [hold]\nenabled = true\ntopic = \"{hold}\"\n"
    );
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    // The lag and producer series come with librdkafka's statistics, every 5 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut metrics = enforcer.metrics();
    while !(metrics.contains("consent_enforcer_input_lag_records")
        && metrics.contains("consent_enforcer_consent_lag_records"))
    {
        assert!(Instant::now() < deadline, "no statistics in\n{metrics}");
        std::thread::sleep(Duration::from_millis(200));
        metrics = enforcer.metrics();
    }
    let families = families(&metrics);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/dashboards/consent-enforcer.json",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let missing: Vec<String> = names_in(&text)
            .into_iter()
            .filter(|name| !exported(name, &families))
            .collect();
        assert!(
            missing.is_empty(),
            "{file} reads {missing:?}, not on /metrics"
        );
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let documented = names_in(&readme);
    let undocumented: Vec<&String> = families
        .iter()
        .map(|(family, _)| family)
        .filter(|family| !documented.contains(*family))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in the README: {undocumented:?}"
    );
}
