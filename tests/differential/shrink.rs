//! Makes a failing case small (drops steps and destinations while it still fails) and prints
//! it so that a person can follow it.

use std::fmt::Write;

use crate::generate::{rfc3339, Case, Step};

/// The smallest case found that still fails: steps are dropped in halves, quarters, ... down
/// to one at a time, then destinations one at a time, until nothing more can go.
pub fn shrink(mut case: Case, fails: impl Fn(&Case) -> bool) -> Case {
    loop {
        let mut progressed = false;
        let mut chunk = (case.steps.len() / 2).max(1);
        loop {
            let mut start = 0;
            while start < case.steps.len() {
                let mut candidate = case.clone();
                let end = (start + chunk).min(candidate.steps.len());
                candidate.steps.drain(start..end);
                if fails(&candidate) {
                    case = candidate;
                    progressed = true;
                } else {
                    start += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
        for i in (0..case.config.destinations.len()).rev() {
            if case.config.destinations.len() > 1 {
                let mut candidate = case.clone();
                candidate.config.destinations.remove(i);
                // Jurisdictions may name only the categories destinations still need.
                let categories = candidate.config.categories();
                for j in &mut candidate.config.jurisdictions {
                    j.granted_by_default.retain(|c| categories.contains(c));
                    j.gpc_denies.retain(|c| categories.contains(c));
                }
                if fails(&candidate) {
                    case = candidate;
                    progressed = true;
                }
            }
        }
        if !progressed {
            return case;
        }
    }
}

/// The case as text: its config, then each step with times relative to the first "now".
pub fn describe(case: &Case) -> String {
    let origin = case.steps.first().map_or(0, Step::now);
    let time = |ms: i64| {
        format!(
            "{} (t0{:+}ms)",
            rfc3339(ms, 0, ".mmm", 'T', "Z"),
            ms - origin
        )
    };
    let kafka = |ts: &Option<i64>| ts.map_or("none".to_owned(), time);
    let bytes = |b: &Option<Vec<u8>>| match b {
        None => "null".to_owned(),
        Some(b) => String::from_utf8(b.clone())
            .unwrap_or_else(|_| format!("(not UTF-8) {}", String::from_utf8_lossy(b))),
    };
    let mut text = format!(
        "config seed {:#018x}, steps seed {:#018x}\n--- config ---\n{}--- steps ---\n",
        case.config_seed,
        case.seed,
        case.config.toml()
    );
    for (i, step) in case.steps.iter().enumerate() {
        match step {
            Step::Record {
                key,
                value,
                kafka_ts,
                now,
                note,
                privacy,
            } => writeln!(
                text,
                "#{i} {} record [{note}] now {}, Kafka timestamp {}\n   key {}\n   value {}",
                if *privacy { "privacy" } else { "consent" },
                time(*now),
                kafka(kafka_ts),
                bytes(key),
                bytes(value)
            ),
            Step::Event {
                value,
                kafka_ts,
                now,
                sweep,
                note,
            } => writeln!(
                text,
                "#{i} event [{note}] now {}{}, Kafka timestamp {}\n   value {}",
                time(*now),
                if *sweep { " (history swept first)" } else { "" },
                kafka(kafka_ts),
                bytes(value)
            ),
        }
        .unwrap();
    }
    text
}
