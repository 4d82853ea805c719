//! `consent-enforcer run --config FILE` and `consent-enforcer check-config --config FILE`.
//!
//! Exit status: 0 on a clean stop, 1 on a runtime failure, 2 on a configuration error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use consent_enforcer::config::{Config, ConfigError};
use consent_enforcer::kafka;
use consent_enforcer::secrets::Redactor;
use consent_enforcer::service;
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "Enforces user consent on analytics events flowing through Kafka"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the enforcer.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and exit: 0 if valid, 2 with a one-line error if not.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::CheckConfig { config } => match load(&config) {
            Ok(loaded) => {
                println!(
                    "{}: valid ({} input topic(s), {} destination(s))",
                    config.display(),
                    loaded.input.topics.len(),
                    loaded.destinations.len()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config } => {
            let loaded = match load(&config) {
                Ok(loaded) => loaded,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            // librdkafka and rust-rdkafka put property values in their error texts.
            let redactor = Redactor::of(&loaded.kafka);
            match run(loaded) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    let error = redactor.redact(&describe(&error));
                    tracing::error!("{error}");
                    eprintln!("error: {error}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}

/// Reads and validates a config, librdkafka's view of its properties included.
fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    // From here on, librdkafka's own logs (the clients made to check the config included).
    consent_enforcer::secrets::redact_logs(Redactor::of(&config.kafka));
    kafka::check_client_configs(&config)?;
    Ok(config)
}

/// The error and each cause it does not already name: most errors here include their cause's
/// text, and `{:#}` would repeat it.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn run(config: Config) -> anyhow::Result<()> {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&consent_enforcer::telemetry::WAIT_BUCKETS)
        .map_err(|e| anyhow::anyhow!("histogram buckets: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("enforcer-io")
        .build()?;
    runtime.block_on(async move {
        service::run(config, handle, shutdown_signal()).await?;
        Ok(())
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the service");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
