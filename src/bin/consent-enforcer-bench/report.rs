//! The side-by-side report, printed as Markdown and saved as JSON and Markdown.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::memory::TableMemory;
use crate::run::Throughput;

#[derive(Debug, Clone)]
pub struct Settings {
    pub users: u64,
    pub events: u64,
    pub rounds: usize,
    pub latency_seconds: f64,
    /// Fixed offered load for the latency runs, if given.
    pub latency_rate: Option<f64>,
    pub partitions: i32,
    pub destination_partitions: i32,
    /// `--consent-model full`: jurisdictions, GPC and privacy requests configured.
    pub full_model: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub samples: usize,
}

impl Percentiles {
    /// From sorted samples (nearest rank).
    pub fn of(sorted: &[f64]) -> Percentiles {
        let at = |q: f64| {
            if sorted.is_empty() {
                return f64::NAN;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1]
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            samples: sorted.len(),
        }
    }

    /// Each percentile's median over rounds; samples summed.
    fn median_of(rounds: &[Percentiles]) -> Percentiles {
        let of = |f: fn(&Percentiles) -> f64| median(rounds.iter().map(f).collect());
        Percentiles {
            p50: of(|p| p.p50),
            p99: of(|p| p.p99),
            p999: of(|p| p.p999),
            samples: rounds.iter().map(|p| p.samples).sum(),
        }
    }
}

pub struct Report {
    pub settings: Settings,
    pub states: u64,
    pub fanout: f64,
    /// Dead-letter writes per event (the baseline copies the same share).
    pub dead_letter_share: f64,
    pub enforcer: Vec<Throughput>,
    pub baseline: Vec<Throughput>,
    pub latency_rate: f64,
    /// One measurement per round, interleaved with the baseline's.
    pub enforcer_latency: Vec<Percentiles>,
    pub baseline_latency: Vec<Percentiles>,
    pub table: TableMemory,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.0}..{max:.0}")
}

impl Report {
    fn column(runs: &[Throughput], f: impl Fn(&Throughput) -> f64) -> f64 {
        median(runs.iter().map(f).collect())
    }

    fn rows(&self) -> Vec<(String, f64, f64)> {
        let both = |f: fn(&Throughput) -> f64| {
            (
                Self::column(&self.enforcer, f),
                Self::column(&self.baseline, f),
            )
        };
        let (ein, bin) = both(Throughput::events_per_second);
        let (eout, bout) = both(Throughput::deliveries_per_second);
        let (ecpu, bcpu) = both(Throughput::cpu_seconds_per_million);
        let (erss, brss) = both(|t| t.peak_rss_bytes as f64 / 1_048_576.0);
        let elat = Percentiles::median_of(&self.enforcer_latency);
        let blat = Percentiles::median_of(&self.baseline_latency);
        vec![
            ("events/s in (median)".to_owned(), ein, bin),
            ("deliveries/s out (median)".to_owned(), eout, bout),
            ("CPU seconds per million events".to_owned(), ecpu, bcpu),
            ("peak RSS, MiB".to_owned(), erss, brss),
            ("latency p50, ms (median)".to_owned(), elat.p50, blat.p50),
            ("latency p99, ms (median)".to_owned(), elat.p99, blat.p99),
            (
                "latency p99.9, ms (median)".to_owned(),
                elat.p999,
                blat.p999,
            ),
        ]
    }

    pub fn markdown(&self) -> String {
        let mut text = format!(
            "Benchmark {} on {} cores, revision {}: {} users ({} states), {} events, {} input and {} destination partitions, fan-out {:.2} (dead letters {:.3}), {} rounds each (interleaved), consent model {}\n\n",
            date(),
            cores(),
            revision(),
            self.settings.users,
            self.states,
            self.settings.events,
            self.settings.partitions,
            self.settings.destination_partitions,
            self.fanout,
            self.dead_letter_share,
            self.settings.rounds,
            if self.settings.full_model { "full" } else { "basic" }
        );
        text.push_str("| measure | enforcer | baseline copy | ratio |\n|---|---:|---:|---:|\n");
        for (name, enforcer, baseline) in self.rows() {
            text.push_str(&format!(
                "| {name} | {enforcer:.1} | {baseline:.1} | {:.2} |\n",
                enforcer / baseline
            ));
        }
        let bootstrap = Self::column(&self.enforcer, |t| t.bootstrap_seconds);
        let p99s =
            |rounds: &[Percentiles]| spread(&rounds.iter().map(|p| p.p99).collect::<Vec<_>>());
        text.push_str(&format!(
            "\nSpread over rounds, events/s: enforcer {}, baseline {}; latency p99, ms: enforcer {}, baseline {}.\n\
             Latency measured at {:.0} events/s offered ({} and {} samples).\n\
             Consent table: {:.1} bytes per user beyond the key ({:.1} key bytes), {:.0} states/s applied in process; \
             bootstrap from Kafka {:.2} s for {} states ({:.0} states/s).\n",
            spread(&self.enforcer.iter().map(Throughput::events_per_second).collect::<Vec<_>>()),
            spread(&self.baseline.iter().map(Throughput::events_per_second).collect::<Vec<_>>()),
            p99s(&self.enforcer_latency),
            p99s(&self.baseline_latency),
            self.latency_rate,
            Percentiles::median_of(&self.enforcer_latency).samples,
            Percentiles::median_of(&self.baseline_latency).samples,
            self.table.bytes_per_user_beyond_key,
            self.table.key_bytes_per_user,
            self.table.states_per_second,
            bootstrap,
            self.states,
            self.states as f64 / bootstrap.max(1e-9),
        ));
        text
    }

    pub fn json(&self) -> serde_json::Value {
        let runs = |runs: &[Throughput]| -> Vec<serde_json::Value> {
            runs.iter()
                .map(|t| {
                    json!({
                        "events": t.events,
                        "seconds": t.seconds,
                        "events_per_second": t.events_per_second(),
                        "deliveries_per_second": t.deliveries_per_second(),
                        "cpu_seconds": t.cpu_seconds,
                        "cpu_seconds_per_million_events": t.cpu_seconds_per_million(),
                        "peak_rss_bytes": t.peak_rss_bytes,
                        "bootstrap_seconds": t.bootstrap_seconds,
                    })
                })
                .collect()
        };
        let percentiles = |p: &Percentiles| json!({"p50_ms": p.p50, "p99_ms": p.p99, "p999_ms": p.p999, "samples": p.samples});
        // The medians over rounds, with each round's own percentiles.
        let latency = |rounds: &[Percentiles]| {
            let mut summary = percentiles(&Percentiles::median_of(rounds));
            summary["rounds"] = rounds.iter().map(percentiles).collect();
            summary
        };
        json!({
            "date": date(),
            "cores": cores(),
            "revision": revision(),
            "settings": {
                "users": self.settings.users,
                "events": self.settings.events,
                "rounds": self.settings.rounds,
                "partitions": self.settings.partitions,
                "destination_partitions": self.settings.destination_partitions,
                "consent_model": if self.settings.full_model { "full" } else { "basic" },
                "latency_seconds": self.settings.latency_seconds,
            },
            "consent_states": self.states,
            "fanout": self.fanout,
            "dead_letter_share": self.dead_letter_share,
            "enforcer": runs(&self.enforcer),
            "baseline": runs(&self.baseline),
            "latency": {
                "offered_events_per_second": self.latency_rate,
                "enforcer": latency(&self.enforcer_latency),
                "baseline": latency(&self.baseline_latency),
            },
            "consent_table": {
                "users": self.table.users,
                "key_bytes_per_user": self.table.key_bytes_per_user,
                "bytes_per_user_beyond_key": self.table.bytes_per_user_beyond_key,
                "states_per_second_in_process": self.table.states_per_second,
            },
            "ratios": self.rows().into_iter().map(|(name, e, b)| json!({"measure": name, "enforcer": e, "baseline": b, "ratio": e / b})).collect::<Vec<_>>(),
        })
    }

    /// Writes `<dir>/<date>-<revision>.json` and `.md`; returns the JSON path.
    pub fn save(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let stem = format!("{}-{}", date().replace(':', ""), revision());
        let json_path = dir.join(format!("{stem}.json"));
        std::fs::write(&json_path, serde_json::to_string_pretty(&self.json())?)?;
        std::fs::write(dir.join(format!("{stem}.md")), self.markdown())?;
        Ok(json_path)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The revision checked out where this binary was built (not where it runs: an older build
/// run for comparison reports its own).
fn revision() -> String {
    std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn date() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map(|d| d[..19].to_owned())
        .unwrap_or_default()
}
