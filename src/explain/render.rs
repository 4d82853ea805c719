//! The explanation as text for people and as JSON for machines (`--format json`).

use std::fmt::Write;

use serde_json::{json, Value};

use super::{CategoryExplained, DestinationVerdict, Explanation, Judged};
use crate::consent::record::format_rfc3339_ms;

pub fn render_json(explanation: &Explanation) -> Value {
    match explanation {
        Explanation::DeadLetter(reason) => json!({"dead_letter": {"reason": reason}}),
        Explanation::Judged(judged) => json!({
            "judged_at": format_rfc3339_ms(judged.at_ms),
            "event_time": format_rfc3339_ms(judged.event_time_ms),
            "event_time_from": time_source(judged),
            "person_state": judged.person_now,
            "suppressed": judged.suppressed,
            "stamps": {
                "categoryPreferences": judged.stamp,
                "consentManagement": judged.consent_management,
            },
            "jurisdiction": judged.law.jurisdiction.as_ref().map(|(name, from)| json!({"name": name, "from": from})),
            "gpc": judged.law.gpc.map(|from| json!({"from": from, "denies": judged.law.withheld})),
            "defaults": judged.law.defaults,
            "at_event_time": match judged.then_known {
                None => "the consent now",
                Some(true) => "the states then in force",
                Some(false) => "unknown: no consent",
            },
            "destinations": judged.destinations.iter().map(destination_json).collect::<Vec<_>>(),
        }),
    }
}

fn destination_json(dest: &DestinationVerdict) -> Value {
    json!({
        "name": dest.name,
        "topic": dest.topic,
        "verdict": if dest.verdict.is_ok() { "deliver" } else { "drop" },
        "reason": dest.verdict.err().map(|reason| reason.as_str()),
        "categories": dest.categories.iter().map(|c| json!({
            "name": c.name,
            "state": c.state,
            "stamp": c.stamp,
            "consentManagement": c.consent_management,
            "default": c.default,
            "gpc_denies": c.gpc_withheld,
        })).collect::<Vec<_>>(),
        "channel": dest.channel.as_ref().map(|(name, subscribed)| json!({"name": name, "subscribed": subscribed})),
    })
}

fn time_source(judged: &Judged) -> &'static str {
    match judged.timestamp_ms {
        Some(ts) if ts == judged.event_time_ms => "its timestamp",
        Some(_) => "the time of judging (its timestamp is later)",
        None => "the time of judging (no timestamp)",
    }
}

pub fn render_text(explanation: &Explanation) -> String {
    let judged = match explanation {
        Explanation::DeadLetter(reason) => {
            return format!("dead letter: {reason} (no destination receives it)\n");
        }
        Explanation::Judged(judged) => judged,
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "judged at {}; the event happened at {} ({})",
        format_rfc3339_ms(judged.at_ms),
        format_rfc3339_ms(judged.event_time_ms),
        time_source(judged)
    );
    let _ = writeln!(
        out,
        "stored state: {}",
        match judged.person_now {
            Some(id) => format!("the {id}'s (the newer of the two)"),
            None => "none".to_owned(),
        }
    );
    for (name, stamp) in [
        ("context.consent.categoryPreferences", &judged.stamp),
        ("context.consentManagement", &judged.consent_management),
    ] {
        if let Some(granted) = stamp {
            let _ = writeln!(out, "stamp {name}: grants {}", list(granted));
        }
    }
    if judged.suppressed {
        let _ = writeln!(
            out,
            "suppressed by a privacy request: no destination receives it"
        );
    }
    let law = &judged.law;
    if law.jurisdictions_configured {
        match &law.jurisdiction {
            Some((name, from)) => {
                let _ = writeln!(out, "jurisdiction: {name} (from {from})");
            }
            None => {
                let _ = writeln!(
                    out,
                    "jurisdiction: none applies (nothing granted by default)"
                );
            }
        }
        if let Some(from) = law.gpc {
            let _ = writeln!(
                out,
                "GPC: signalled by {from}; denies {}",
                list(&law.withheld)
            );
        }
    }
    if judged.person_now.is_none() && judged.stamp.is_none() && judged.consent_management.is_none()
    {
        let _ = writeln!(
            out,
            "no consent source: granted by default {}",
            list(&law.defaults)
        );
    }
    match judged.then_known {
        None => {}
        Some(true) => {
            let _ = writeln!(
                out,
                "at the event's time: judged by the states then in force too"
            );
        }
        Some(false) => {
            let _ = writeln!(
                out,
                "at the event's time: the state then in force is unknown (no consent)"
            );
        }
    }
    for dest in &judged.destinations {
        let verdict = match dest.verdict {
            Ok(()) => "deliver".to_owned(),
            Err(reason) => format!("drop ({})", reason.as_str()),
        };
        let _ = writeln!(out, "{} -> {}: {verdict}", dest.name, dest.topic);
        for category in &dest.categories {
            let _ = writeln!(out, "  {}", category_line(category));
        }
        if let Some((channel, subscribed)) = &dest.channel {
            let status = if *subscribed {
                "subscribed"
            } else {
                "not subscribed"
            };
            let _ = writeln!(out, "  channel {channel}: {status}");
        }
    }
    out
}

fn category_line(category: &CategoryExplained) -> String {
    let word = |granted: bool| if granted { "grants" } else { "does not grant" };
    let mut parts: Vec<String> = Vec::new();
    if let Some(granted) = category.state {
        parts.push(format!("stored state {}", word(granted)));
    }
    if let Some(granted) = category.stamp {
        parts.push(format!("stamp {}", word(granted)));
    }
    if let Some(granted) = category.consent_management {
        parts.push(format!("consentManagement {}", word(granted)));
    }
    if let Some(granted) = category.default {
        parts.push(format!("default {}", word(granted)));
    }
    if category.gpc_withheld {
        parts.push("GPC denies it".to_owned());
    }
    format!("{}: {}", category.name, parts.join(", "))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}
