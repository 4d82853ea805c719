//! `consent-enforcer-bench`: measures the enforcer against a plain Kafka copy with the same
//! fan-out and delivery guarantee, in one run, on the same broker and data.
//!
//!   consent-enforcer-bench run [--quick] [--users N] [--events N] [--rounds N]
//!                              [--latency-seconds S] [--latency-rate EVENTS_PER_SECOND]
//!
//! It never fails for being slow: it measures and reports. See README.md, "Performance".

mod baseline;
mod cluster;
mod data;
mod memory;
mod process;
mod report;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use cluster::Cluster;
use run::{Inputs, Runner, System};

#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

#[derive(Parser)]
#[command(about = "Benchmark: the enforcer against a plain consume-and-copy baseline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate data, run enforcer and baseline interleaved, print and save the report.
    Run {
        /// A small run (20,000 users, 100,000 events, one round each) for smoke tests.
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        users: Option<u64>,
        #[arg(long)]
        events: Option<u64>,
        /// Runs of each system, interleaved.
        #[arg(long)]
        rounds: Option<usize>,
        /// Seconds of offered load for the latency measurement.
        #[arg(long)]
        latency_seconds: Option<f64>,
        /// Events/s offered for the latency measurement (default: half the slowest
        /// throughput round, enforcer or baseline).
        #[arg(long)]
        latency_rate: Option<f64>,
        /// Partitions of each destination and the dead-letter topic (default: as many as
        /// the input's, 6). librdkafka sends one partition per produce request, at most
        /// five in flight: the more partitions written, the longer each waits its turn.
        #[arg(long)]
        destination_partitions: Option<i32>,
        /// `basic`: categories only. `full`: also two jurisdictions (opt-in EU, opt-out
        /// California with GPC), events with locations and GPC signals, and a privacy topic
        /// with 1 % of users suppressed.
        #[arg(long, default_value = "basic", value_parser = ["basic", "full"])]
        consent_model: String,
        /// The broker (default: the local broker of scripts/kafka.sh).
        #[arg(
            long,
            env = "CONSENT_ENFORCER_BENCH_BOOTSTRAP",
            default_value = "127.0.0.1:9092"
        )]
        bootstrap: String,
        /// Where the JSON and Markdown reports go.
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// The baseline process (started by `run`).
    #[command(hide = true)]
    Copy {
        #[arg(long)]
        bootstrap: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        input: String,
        #[arg(long, value_delimiter = ',')]
        destinations: Vec<String>,
        #[arg(long)]
        fanout: f64,
        #[arg(long)]
        dead_letter: String,
        #[arg(long)]
        dead_letter_share: f64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Copy {
            bootstrap,
            group,
            input,
            destinations,
            fanout,
            dead_letter,
            dead_letter_share,
        } => baseline::run(baseline::CopyArgs {
            bootstrap,
            group,
            input,
            destinations,
            fanout,
            dead_letter,
            dead_letter_share,
        }),
        Command::Run {
            quick,
            users,
            events,
            rounds,
            latency_seconds,
            latency_rate,
            destination_partitions,
            consent_model,
            bootstrap,
            results,
        } => {
            let settings = report::Settings {
                users: users.unwrap_or(if quick { 20_000 } else { 1_000_000 }),
                events: events.unwrap_or(if quick { 100_000 } else { 2_000_000 }),
                rounds: rounds.unwrap_or(if quick { 1 } else { 3 }),
                latency_seconds: latency_seconds.unwrap_or(if quick { 5.0 } else { 20.0 }),
                latency_rate,
                partitions: 6,
                destination_partitions: destination_partitions.unwrap_or(6),
                full_model: consent_model == "full",
            };
            benchmark(&settings, &bootstrap, &results)
        }
    }
}

fn benchmark(
    settings: &report::Settings,
    bootstrap: &str,
    results: &std::path::Path,
) -> anyhow::Result<()> {
    let binary_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let cluster = Cluster::connect(bootstrap)?;
    let run_id = format!("bench-{}", std::process::id());
    eprintln!(
        "bench: {} users, {} events, {} rounds",
        settings.users, settings.events, settings.rounds
    );

    let table = memory::measure_table(settings.users);
    eprintln!(
        "bench: consent table {:.1} bytes/user beyond the key ({:.0} states/s applied in process)",
        table.bytes_per_user_beyond_key, table.states_per_second
    );

    let inputs = Inputs {
        events_topic: format!("{run_id}.events"),
        consent_topic: format!("{run_id}.consent"),
        privacy_topic: settings.full_model.then(|| format!("{run_id}.privacy")),
        partitions: settings.partitions,
        destination_partitions: settings.destination_partitions,
    };
    let loaded = load(&cluster, &inputs, settings);
    let outcome = loaded.and_then(|states| {
        let runner = Runner {
            cluster: &cluster,
            binary_dir: &binary_dir,
            inputs: &inputs,
            run_id: run_id.clone(),
        };
        measure(&runner, settings, states, table)
    });
    let mut loaded_topics = vec![inputs.events_topic.clone(), inputs.consent_topic.clone()];
    loaded_topics.extend(inputs.privacy_topic.clone());
    cluster.delete_topics(&loaded_topics);
    let report = outcome?;
    let text = report.markdown();
    println!("{text}");
    let saved = report.save(results)?;
    eprintln!("bench: report written to {}", saved.display());
    Ok(())
}

/// Writes the consent states and events; returns how many states the consent topic holds.
fn load(cluster: &Cluster, inputs: &Inputs, settings: &report::Settings) -> anyhow::Result<u64> {
    let compressed = [("compression.type", "lz4")];
    cluster.create_topic(
        &inputs.consent_topic,
        settings.partitions,
        &[("compression.type", "lz4"), ("cleanup.policy", "compact")],
    )?;
    cluster.create_topic(&inputs.events_topic, settings.partitions, &compressed)?;
    let producer = cluster.producer()?;
    let mut rng = data::Rng::new(7);
    let mut states = 0;
    let mut records = Vec::new();
    for n in 0..settings.users {
        match data::consent_of(&mut rng, "2026-11-20T10:00:00Z") {
            data::ConsentRecord::State(value) => {
                states += 1;
                records.push((data::user_id(n), Some(value.into_bytes()), None));
            }
            data::ConsentRecord::Deleted(value) => {
                records.push((data::user_id(n), Some(value.into_bytes()), None));
                records.push((data::user_id(n), None, None));
            }
            data::ConsentRecord::None => {}
        }
    }
    let started = std::time::Instant::now();
    cluster::send_all(&producer, &inputs.consent_topic, records.into_iter())?;
    eprintln!(
        "bench: {states} consent states written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(privacy) = &inputs.privacy_topic {
        cluster.create_topic(
            privacy,
            settings.partitions,
            &[("compression.type", "lz4"), ("cleanup.policy", "compact")],
        )?;
        let requests = (0..settings.users).filter_map(|n| {
            data::privacy_request_of(n)
                .map(|value| (data::user_id(n), Some(value.into_bytes()), None))
        });
        cluster::send_all(&producer, privacy, requests)?;
    }
    let started = std::time::Instant::now();
    let full = settings.full_model;
    let events = (0..settings.events).map(|id| {
        let (key, value) = data::event(&mut rng, settings.users, id, full);
        (key, Some(value), None)
    });
    cluster::send_all(&producer, &inputs.events_topic, events)?;
    eprintln!(
        "bench: {} events written in {:.1} s",
        settings.events,
        started.elapsed().as_secs_f64()
    );
    Ok(states)
}

fn measure(
    runner: &Runner<'_>,
    settings: &report::Settings,
    states: u64,
    table: memory::TableMemory,
) -> anyhow::Result<report::Report> {
    let mut enforcer = Vec::new();
    let mut baseline = Vec::new();
    let mut fanout = run::Fanout::default();
    for round in 0..settings.rounds {
        let run = runner.throughput(System::Enforcer, round, fanout)?;
        fanout = run::Fanout {
            destinations: run.deliveries / run.events.max(1) as f64,
            dead_letter: run.dead_lettered / run.events.max(1) as f64,
        };
        eprintln!(
            "bench: enforcer round {round}: {:.0} events/s, bootstrap {:.2} s",
            run.events_per_second(),
            run.bootstrap_seconds
        );
        enforcer.push(run);
        let run = runner.throughput(System::Baseline, round, fanout)?;
        eprintln!(
            "bench: baseline round {round}: {:.0} events/s",
            run.events_per_second()
        );
        baseline.push(run);
    }
    let slowest = enforcer
        .iter()
        .chain(&baseline)
        .map(run::Throughput::events_per_second)
        .fold(f64::INFINITY, f64::min);
    let rate = settings
        .latency_rate
        .unwrap_or_else(|| (slowest / 2.0).max(100.0));
    eprintln!("bench: latency at {rate:.0} events/s offered");
    // Interleaved like the throughput runs, so a noisy moment shows as a spread over rounds.
    let mut enforcer_latency = Vec::new();
    let mut baseline_latency = Vec::new();
    for round in 0..settings.rounds {
        for (system, rounds) in [
            (System::Enforcer, &mut enforcer_latency),
            (System::Baseline, &mut baseline_latency),
        ] {
            let latencies = runner.latency(
                system,
                round,
                rate,
                settings.latency_seconds,
                settings.users,
                fanout,
            )?;
            let percentiles = report::Percentiles::of(&latencies);
            eprintln!(
                "bench: {} latency round {round}: p50 {:.0} ms, p99 {:.0} ms",
                system.name(),
                percentiles.p50,
                percentiles.p99
            );
            rounds.push(percentiles);
        }
    }
    Ok(report::Report {
        settings: settings.clone(),
        states,
        fanout: fanout.destinations,
        dead_letter_share: fanout.dead_letter,
        enforcer,
        baseline,
        latency_rate: rate,
        enforcer_latency,
        baseline_latency,
        table,
    })
}
