//! The real consent table and decision against a naive model written from the README
//! (`tests/model`), step by step, on seeded random histories and on fixed regression cases.
//! In-process; no broker.
//!
//! `cargo test --test differential` runs 200,000 random cases. `DIFFERENTIAL_CASES=N` runs N
//! (the documented long run: `DIFFERENTIAL_CASES=10000000 cargo test --release --test
//! differential`), `DIFFERENTIAL_SEED=S` (decimal or `0x` hex) another seed,
//! `DIFFERENTIAL_FIRST=I` starts at case I. A disagreement is shrunk and printed with the
//! settings that rerun it. See docs/reference-model.md.

mod model;

#[path = "differential/generate.rs"]
mod generate;
#[path = "differential/narrowing.rs"]
mod narrowing;
#[path = "differential/real.rs"]
mod real;
#[path = "differential/regressions.rs"]
mod regressions;
#[path = "differential/shrink.rs"]
mod shrink;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use generate::{Case, Step};
use model::{Judgement, Model, RecordOutcome, Verdict};
use narrowing::NarrowingProbe;
use real::Real;

const DEFAULT_CASES: u64 = 200_000;
const DEFAULT_SEED: u64 = 0x00C0_4E57_0013;
/// Consecutive cases share one config.
const CONFIG_GROUP: u64 = 16;

/// How often each outcome and each situation came up, to show what the cases covered.
#[derive(Debug, Default)]
pub struct Stats(BTreeMap<String, u64>);

impl Stats {
    fn add(&mut self, key: impl Into<String>) {
        *self.0.entry(key.into()).or_default() += 1;
    }

    fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

thread_local! {
    /// The last config parsed, by its TOML text: cases come in groups that share one.
    static CONFIGS: RefCell<Option<(String, Configs)>> = const { RefCell::new(None) };
}

/// A config as src reads it and as the model reads it.
pub type Configs = (Rc<consent_enforcer::config::Config>, Rc<model::Config>);

pub fn configs(toml: &str) -> Configs {
    CONFIGS.with_borrow_mut(|cache| {
        if cache.as_ref().is_none_or(|(text, _)| text != toml) {
            let parsed = (
                Rc::new(real::config(toml)),
                Rc::new(model::Config::from_toml(toml)),
            );
            *cache = Some((toml.to_owned(), parsed));
        }
        let (_, (src, model)) = cache.as_ref().expect("just filled");
        (Rc::clone(src), Rc::clone(model))
    })
}

/// Runs `case` through the real code and the model side by side; the first disagreement, if
/// any, as text.
pub fn check(case: &Case, mut stats: Option<&mut Stats>) -> Result<(), String> {
    let (src_config, model_config) = configs(&case.config.toml());
    let mut real = Real::new(src_config);
    let mut model = Model::new(model_config);
    let mut count = |key: String| {
        if let Some(stats) = stats.as_deref_mut() {
            stats.add(key);
        }
    };
    for (i, step) in case.steps.iter().enumerate() {
        match step {
            Step::Record {
                key,
                value,
                kafka_ts,
                now,
                privacy: true,
                ..
            } => {
                let (key, value) = (key.as_deref(), value.as_deref());
                let expected = model.privacy(key, value, *kafka_ts, *now);
                let src = real.privacy(key, value, *kafka_ts, *now);
                if src != expected {
                    return Err(format!(
                        "step #{i}, privacy record: src {src:?}, model {expected:?}"
                    ));
                }
                count(format!("privacy {expected}"));
            }
            Step::Record {
                key,
                value,
                kafka_ts,
                now,
                ..
            } => {
                let (key, value) = (key.as_deref(), value.as_deref());
                let pending = model.prepare(key, value, *kafka_ts, *now);
                let (may_narrow, src) = real.record(key, value, *kafka_ts, *now);
                // A record that leaves its identifier's stored state as it is changes no "now"
                // decision: only the others need probing.
                let probe = match (may_narrow, key) {
                    (Some(false), Some(user)) if pending.changes_now() => {
                        Some(NarrowingProbe::new(&model, user))
                    }
                    _ => None,
                };
                let before = probe.as_ref().map(|p| p.persons(&model));
                let expected = model.commit(pending);
                if src != expected {
                    return Err(format!(
                        "step #{i}, consent record: src {src:?}, model {expected:?}"
                    ));
                }
                if let (Some(probe), Some(before)) = (probe, before) {
                    probe
                        .check(&model, &before)
                        .map_err(|e| format!("step #{i}: may_narrow answered false, but {e}"))?;
                    count("may_narrow false, probed".to_owned());
                }
                count(format!("record {}", record_label(&expected)));
            }
            Step::Event {
                value,
                kafka_ts,
                now,
                sweep,
                ..
            } => {
                if *sweep {
                    real.sweep(*now);
                    model.sweep(*now);
                }
                let src = real.event(value.as_deref(), *kafka_ts, *now);
                let (expected, trace) = model.event(value.as_deref(), *kafka_ts, *now);
                if src != expected {
                    return Err(format!("step #{i}, event: src {src:?}, model {expected:?}"));
                }
                match &expected {
                    Judgement::DeadLetter(reason) => count(format!("event dead-lettered {reason}")),
                    Judgement::Judged(verdicts) => {
                        for verdict in verdicts {
                            count(match verdict {
                                Verdict::Deliver => "verdict deliver".to_owned(),
                                Verdict::Drop(reason) => format!("verdict drop {reason}"),
                            });
                        }
                        for (flag, name) in [
                            (trace.then_dropped, "then dropped what now allowed"),
                            (trace.unknown_then, "unknown at the event's time"),
                            (trace.same_millisecond, "same-millisecond candidates"),
                            (trace.failed_closed, "failed-closed identifier"),
                            (trace.time_not_timestamp, "event time not its timestamp"),
                            (trace.older_than_window, "timestamp older than the window"),
                            (trace.rudderstack_stamp, "RudderStack consentManagement"),
                            (trace.alias_in_stamp, "alias in a stamp"),
                            (trace.channel_delivered, "channel destination delivered"),
                            (trace.suppressed, "suppressed"),
                            (trace.dated_in_lifted, "dated within a lifted suppression"),
                            (trace.gpc_withheld, "GPC withheld a grant"),
                            (trace.default_granted, "jurisdiction default granted"),
                            (trace.jurisdiction_of_state, "jurisdiction of the state"),
                            (
                                trace.jurisdiction_of_location,
                                "jurisdiction of the location",
                            ),
                        ] {
                            if flag {
                                count(format!("situation: {name}"));
                            }
                        }
                        if let Some(bound) = trace.evicted_by {
                            count(format!("situation: history evicted by {bound}"));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn record_label(outcome: &RecordOutcome) -> String {
    match outcome {
        RecordOutcome::Stale { .. } => "stale".to_owned(),
        RecordOutcome::StaleWhileFailed => "stale while failed closed".to_owned(),
        RecordOutcome::Stored { future_dated: true } => "stored future-dated".to_owned(),
        RecordOutcome::Stored { .. } => "stored".to_owned(),
        RecordOutcome::FailedClosed(reason) => format!("failed closed {reason}"),
        other => format!("{other:?}"),
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => {
            let text = text.trim().replace('_', "");
            match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            }
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
        }
    }
}

/// Shrinks a failing case and panics with it, printed.
fn report(case: Case, rerun: &str) -> ! {
    let small = shrink::shrink(case, |c| check(c, None).is_err());
    let why = check(&small, None).expect_err("the shrunk case still fails");
    panic!(
        "the real code and the model disagree ({rerun})\n{why}\n{}",
        shrink::describe(&small)
    );
}

#[test]
fn the_real_code_agrees_with_the_model_on_random_histories() {
    let cases = env_u64("DIFFERENTIAL_CASES", DEFAULT_CASES);
    let seed = env_u64("DIFFERENTIAL_SEED", DEFAULT_SEED);
    let first = env_u64("DIFFERENTIAL_FIRST", 0);
    let started = Instant::now();
    let mut stats = Stats::default();
    for index in first..first + cases {
        let case = generate::case(
            generate::case_seed(seed, index / CONFIG_GROUP * CONFIG_GROUP),
            generate::case_seed(seed, index),
        );
        if check(&case, Some(&mut stats)).is_err() {
            report(
                case,
                &format!(
                    "case {index} of seed {seed:#x}; rerun it alone with \
                     DIFFERENTIAL_SEED={seed:#x} DIFFERENTIAL_FIRST={index} DIFFERENTIAL_CASES=1"
                ),
            );
        }
        let done = index - first + 1;
        if done % 1_000_000 == 0 {
            eprintln!("{done} cases agree ({:.0?})", started.elapsed());
        }
    }
    eprintln!(
        "{cases} cases from seed {seed:#x} (first {first}) agree, in {:.1?}",
        started.elapsed()
    );
    for (key, n) in &stats.0 {
        eprintln!("  {n:>10}  {key}");
    }
    if cases >= 10_000 {
        assert_generator_covers(&stats);
    }
}

/// The generator keeps reaching every outcome and every situation the rules distinguish.
fn assert_generator_covers(stats: &Stats) {
    let mut expected: Vec<String> = [
        "record stored",
        "record stored future-dated",
        "record stale",
        "record Removed",
        "record BadKey",
        "record KeyTooLong",
        "may_narrow false, probed",
        "verdict deliver",
        "verdict drop integrations",
        "verdict drop no_consent",
        "verdict drop denied",
        "verdict drop unsubscribed",
        "verdict drop suppressed",
        "situation: dated within a lifted suppression",
        "privacy applied",
        "privacy rejected unknown_type",
        "privacy rejected not_json",
        "privacy rejected bad_requested_at",
        "situation: RudderStack consentManagement",
        "situation: alias in a stamp",
        "situation: channel destination delivered",
        "situation: GPC withheld a grant",
        "situation: jurisdiction default granted",
        "situation: jurisdiction of the state",
        "situation: jurisdiction of the location",
        "situation: then dropped what now allowed",
        "situation: unknown at the event's time",
        "situation: same-millisecond candidates",
        "situation: history evicted by window",
        "situation: history evicted by sweep",
        "situation: timestamp older than the window",
        "situation: history evicted by changes",
        "situation: history evicted by states",
        "situation: failed-closed identifier",
        "situation: event time not its timestamp",
    ]
    .map(str::to_owned)
    .to_vec();
    for reason in [
        "not_json",
        "not_object",
        "duplicate_key",
        "bad_preferences",
        "bad_updated_at",
    ] {
        expected.push(format!("record failed closed {reason}"));
    }
    for reason in [
        "null_value",
        "too_large",
        "not_json",
        "not_object",
        "duplicate_key",
        "no_identifier",
    ] {
        expected.push(format!("event dead-lettered {reason}"));
    }
    let missing: Vec<&String> = expected.iter().filter(|k| stats.get(k) == 0).collect();
    assert!(missing.is_empty(), "never generated: {missing:?}");
}
