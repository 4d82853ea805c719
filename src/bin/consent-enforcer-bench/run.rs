//! One measured run of the enforcer or the baseline against pre-loaded topics.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cluster::Cluster;
use crate::data;
use crate::process::{free_port, http_get, metric_sum, Measured};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Enforcer,
    Baseline,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Enforcer => "enforcer",
            System::Baseline => "baseline",
        }
    }
}

/// The topics a run reads: pre-loaded once.
pub struct Inputs {
    pub events_topic: String,
    pub consent_topic: String,
    /// `--consent-model full`: the privacy topic (jurisdictions and privacy requests are
    /// configured).
    pub privacy_topic: Option<String>,
    pub partitions: i32,
    pub destination_partitions: i32,
}

/// What the enforcer wrote per event, which the baseline copies.
#[derive(Clone, Copy, Default)]
pub struct Fanout {
    /// Destination writes per event.
    pub destinations: f64,
    /// Dead-letter writes per event.
    pub dead_letter: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub events: u64,
    pub seconds: f64,
    pub deliveries: f64,
    pub dead_lettered: f64,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// Enforcer only: time to load the consent table.
    pub bootstrap_seconds: f64,
}

impl Throughput {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }

    pub fn deliveries_per_second(&self) -> f64 {
        self.deliveries / self.seconds.max(1e-9)
    }

    pub fn cpu_seconds_per_million(&self) -> f64 {
        self.cpu_seconds / (self.events as f64 / 1e6).max(1e-9)
    }
}

pub struct Runner<'a> {
    pub cluster: &'a Cluster,
    pub binary_dir: &'a Path,
    pub inputs: &'a Inputs,
    pub run_id: String,
}

impl Runner<'_> {
    /// Creates the run's destination topics (LogAppendTime, so latency can be read from
    /// them).
    fn destinations(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let topics = data::destination_topics(prefix);
        for topic in &topics {
            self.cluster.create_topic(
                topic,
                self.inputs.destination_partitions,
                &[
                    ("message.timestamp.type", "LogAppendTime"),
                    ("compression.type", "lz4"),
                ],
            )?;
        }
        Ok(topics)
    }

    /// Starts `system`; returns the process, its metrics port (enforcer) and when it was
    /// ready to judge events.
    fn start(
        &self,
        system: System,
        prefix: &str,
        group: &str,
        fanout: Fanout,
    ) -> anyhow::Result<(Measured, Option<u16>, Instant, f64)> {
        match system {
            System::Enforcer => {
                let port = free_port();
                let config = data::enforcer_config(
                    &self.cluster.bootstrap,
                    group,
                    &self.inputs.events_topic,
                    &self.inputs.consent_topic,
                    prefix,
                    port,
                    self.inputs.privacy_topic.as_deref(),
                );
                let path = std::env::temp_dir().join(format!("{prefix}.toml"));
                std::fs::write(&path, config)?;
                let started = Instant::now();
                let process = Measured::spawn(
                    Command::new(self.binary_dir.join("consent-enforcer"))
                        .args(["run", "--config"])
                        .arg(&path)
                        .env("RUST_LOG", "warn"),
                )
                .context("start the enforcer (build it with cargo build --release)")?;
                let deadline = started + Duration::from_secs(600);
                loop {
                    if http_get(port, "/readyz").is_some() {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("the enforcer did not become ready");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Read at start; nothing else needs it.
                let _ = std::fs::remove_file(&path);
                let bootstrap = http_get(port, "/metrics").map_or(0.0, |m| {
                    metric_sum(&m, "consent_enforcer_consent_bootstrap_seconds")
                });
                Ok((process, Some(port), Instant::now(), bootstrap))
            }
            System::Baseline => {
                let topics = data::destination_topics(prefix);
                let process = Measured::spawn(
                    Command::new(self.binary_dir.join("consent-enforcer-bench"))
                        .arg("copy")
                        .args(["--bootstrap", &self.cluster.bootstrap])
                        .args(["--group", group])
                        .args(["--input", &self.inputs.events_topic])
                        .args(["--destinations", &topics[..topics.len() - 1].join(",")])
                        .args(["--fanout", &fanout.destinations.to_string()])
                        .args(["--dead-letter", &topics[topics.len() - 1]])
                        .args(["--dead-letter-share", &fanout.dead_letter.to_string()]),
                )?;
                Ok((process, None, Instant::now(), 0.0))
            }
        }
    }

    /// Processes the whole pre-loaded input; measures throughput.
    pub fn throughput(
        &self,
        system: System,
        round: usize,
        fanout: Fanout,
    ) -> anyhow::Result<Throughput> {
        let prefix = format!("{}.{}-{round}", self.run_id, system.name());
        let group = format!("{prefix}.group");
        let topics = self.destinations(&prefix)?;
        let total: i64 = self
            .cluster
            .end_offsets(&self.inputs.events_topic)?
            .values()
            .sum();
        let (process, port, ready, bootstrap_seconds) =
            self.start(system, &prefix, &group, fanout)?;
        let cpu_start = process.cpu_seconds();
        let deadline = Instant::now() + Duration::from_secs(1_800);
        loop {
            let committed = self.cluster.committed(
                &group,
                &self.inputs.events_topic,
                self.inputs.partitions,
            )?;
            if committed >= total {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} did not finish the input", system.name());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let seconds = ready.elapsed().as_secs_f64();
        let cpu_seconds = process.cpu_seconds() - cpu_start;
        let peak_rss_bytes = process.peak_rss_bytes();
        let (deliveries, dead_lettered) = match port {
            Some(port) => http_get(port, "/metrics").map_or((0.0, 0.0), |m| {
                (
                    metric_sum(&m, "consent_enforcer_events_delivered_total"),
                    metric_sum(&m, "consent_enforcer_events_dead_lettered_total"),
                )
            }),
            None => (
                total as f64 * fanout.destinations,
                total as f64 * fanout.dead_letter,
            ),
        };
        process.stop();
        self.cluster.delete_topics(&topics);
        Ok(Throughput {
            events: total as u64,
            seconds,
            deliveries,
            dead_lettered,
            cpu_seconds,
            peak_rss_bytes,
            bootstrap_seconds,
        })
    }

    /// Offers `rate` events per second for `seconds`; returns end-to-end latencies in ms
    /// (produce time to destination append time), sorted.
    pub fn latency(
        &self,
        system: System,
        round: usize,
        rate: f64,
        seconds: f64,
        users: u64,
        fanout: Fanout,
    ) -> anyhow::Result<Vec<f64>> {
        let prefix = format!("{}.{}-latency-{round}", self.run_id, system.name());
        let group = format!("{prefix}.group");
        let input = format!("{prefix}.events");
        self.cluster.create_topic(
            &input,
            self.inputs.partitions,
            &[("compression.type", "lz4")],
        )?;
        let topics = self.destinations(&prefix)?;
        let inputs = Inputs {
            events_topic: input.clone(),
            consent_topic: self.inputs.consent_topic.clone(),
            privacy_topic: self.inputs.privacy_topic.clone(),
            partitions: self.inputs.partitions,
            destination_partitions: self.inputs.destination_partitions,
        };
        let runner = Runner {
            cluster: self.cluster,
            binary_dir: self.binary_dir,
            inputs: &inputs,
            run_id: self.run_id.clone(),
        };
        let (process, _, _, _) = runner.start(system, &prefix, &group, fanout)?;
        // Let the group settle before offering load.
        std::thread::sleep(Duration::from_secs(3));
        let producer = self.cluster.producer()?;
        let mut rng = data::Rng::new(99);
        let full = self.inputs.privacy_topic.is_some();
        // The measured window follows a warm-up at the same rate: the first seconds of load
        // on fresh destination topics are slow for both systems by a different amount each
        // round (p50 up to 190 ms in the first 50,000 events, then 13-20 ms), which is the
        // start-up, not the steady state.
        let count = (rate * (LATENCY_WARMUP_SECONDS + seconds)) as u64;
        // Built before the clock starts: building an event costs the load generator about as
        // much CPU as judging it costs the enforcer, on the same two cores.
        let events: Vec<(String, Vec<u8>)> = (0..count)
            .map(|i| data::event(&mut rng, users, 10_000_000 + i, full))
            .collect();
        let started = Instant::now();
        let measured_from_ms = now_ms() + (LATENCY_WARMUP_SECONDS * 1_000.0) as i64;
        let records = events.into_iter().enumerate().map(|(i, (key, value))| {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            (key, Some(value), Some(now_ms()))
        });
        crate::cluster::send_all(&producer, &input, records)?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while self
            .cluster
            .committed(&group, &input, self.inputs.partitions)?
            < count as i64
        {
            if Instant::now() > deadline {
                bail!("{} did not finish the latency run", system.name());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        process.stop();
        let mut latencies = Vec::new();
        for topic in &topics[..topics.len() - 1] {
            latencies.extend(read_latencies(self.cluster, topic, measured_from_ms)?);
        }
        latencies.sort_by(f64::total_cmp);
        let mut delete = topics;
        delete.push(input);
        self.cluster.delete_topics(&delete);
        Ok(latencies)
    }
}

/// Seconds of offered load before the latency window, not measured.
const LATENCY_WARMUP_SECONDS: f64 = 5.0;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Append time minus the `bench-sent-ms` header, for every record of a topic sent at or
/// after `from_ms`.
fn read_latencies(cluster: &Cluster, topic: &str, from_ms: i64) -> anyhow::Result<Vec<f64>> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};
    let ends = cluster.end_offsets(topic)?;
    let mut remaining: i64 = ends.values().sum();
    let consumer = cluster.consumer(&format!("{topic}.reader"))?;
    let mut list = rdkafka::TopicPartitionList::new();
    for partition in ends.keys() {
        list.add_partition_offset(topic, *partition, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while remaining > 0 && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        remaining -= 1;
        let sent = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == "bench-sent-ms")
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<i64>().ok())
        });
        if let (Some(sent), Some(appended)) = (sent, message.timestamp().to_millis()) {
            if sent >= from_ms {
                latencies.push((appended - sent) as f64);
            }
        }
    }
    Ok(latencies)
}
