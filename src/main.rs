//! `consent-enforcer run --config FILE`, `consent-enforcer check-config --config FILE` and
//! `consent-enforcer explain --config FILE --event FILE [...]`.
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
    #[arg(
        long,
        value_enum,
        default_value_t = LogFormat::Text,
        global = true,
        env = "CONSENT_ENFORCER_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the enforcer.
    Run {
        #[arg(long, short, env = "CONSENT_ENFORCER_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and exit: 0 if valid, 2 with a one-line error if not.
    CheckConfig {
        #[arg(long, short, env = "CONSENT_ENFORCER_CONFIG")]
        config: PathBuf,
    },
    /// Show what the enforcer does with one event, for every destination, and why.
    Explain {
        #[arg(long, short, env = "CONSENT_ENFORCER_CONFIG")]
        config: PathBuf,
        /// The event's value, as it is on the input topic.
        #[arg(long)]
        event: PathBuf,
        /// The consent record value of the event's userId.
        #[arg(long)]
        state: Option<PathBuf>,
        /// The consent record value of the event's anonymousId.
        #[arg(long)]
        anonymous_state: Option<PathBuf>,
        /// A privacy request keyed by the event's userId (else its anonymousId).
        #[arg(long)]
        request: Option<PathBuf>,
        /// The time of judging (RFC 3339); default now. The states are taken as read then.
        #[arg(long)]
        at: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `--help` and `--version` print as usual; with JSON logs asked for, an argument error
        // is one JSON line too.
        Err(error) if error.use_stderr() && json_logs_asked() => {
            let line = serde_json::json!({
                "timestamp": consent_enforcer::consent::record::format_rfc3339_ms(
                    consent_enforcer::clock::now_ms()
                ),
                "level": "ERROR",
                "fields": {"message": error.to_string().trim()},
                "target": "consent_enforcer",
            });
            eprintln!("{line}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(error) => error.exit(),
    };
    init_logging(cli.log_format);
    if cli.log_format == LogFormat::Json {
        // A panic's message as a log line, not the default hook's plain text.
        std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panicked")));
    }
    let log_format = cli.log_format;
    // With `--log-format json` every line on stderr is JSON: the error is logged, not printed.
    let fail = |message: &dyn std::fmt::Display| match log_format {
        LogFormat::Text => eprintln!("error: {message}"),
        LogFormat::Json => tracing::error!("{message}"),
    };
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
                fail(&error);
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Explain {
            config,
            event,
            state,
            anonymous_state,
            request,
            at,
            format,
        } => {
            let loaded = match load(&config) {
                Ok(loaded) => loaded,
                Err(error) => {
                    fail(&error);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let files = ExplainFiles {
                event,
                state,
                anonymous_state,
                request,
                at,
            };
            match explain(&loaded, files, format) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    fail(&error);
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Run { config } => {
            let loaded = match load(&config) {
                Ok(loaded) => loaded,
                Err(error) => {
                    fail(&error);
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
                    if log_format == LogFormat::Text {
                        eprintln!("error: {error}");
                    }
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

struct ExplainFiles {
    event: PathBuf,
    state: Option<PathBuf>,
    anonymous_state: Option<PathBuf>,
    request: Option<PathBuf>,
    at: Option<String>,
}

/// The explanation, rendered; an error names the argument at fault.
fn explain(config: &Config, files: ExplainFiles, format: OutputFormat) -> Result<String, String> {
    use consent_enforcer::explain::{render_json, render_text, Explainer, Question};
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{flag}: cannot read {}: {e}", path.display()))
    };
    let event = read("--event", &files.event)?;
    let state = files
        .state
        .as_deref()
        .map(|p| read("--state", p))
        .transpose()?;
    let anonymous_state = files
        .anonymous_state
        .as_deref()
        .map(|p| read("--anonymous-state", p))
        .transpose()?;
    let request = files
        .request
        .as_deref()
        .map(|p| read("--request", p))
        .transpose()?;
    let at_ms = match &files.at {
        Some(text) => consent_enforcer::consent::record::parse_rfc3339_ms(text)
            .ok_or_else(|| format!("--at: {text:?} is not an RFC 3339 date-time"))?,
        None => consent_enforcer::clock::now_ms(),
    };
    let question = Question {
        event: trim_newline(&event),
        state: state.as_deref().map(trim_newline),
        anonymous_state: anonymous_state.as_deref().map(trim_newline),
        request: request.as_deref().map(trim_newline),
        at_ms,
    };
    let explainer = Explainer::new(config);
    let table = explainer.table(&question).map_err(|e| e.to_string())?;
    let explanation = explainer.explain(&table, question.event, Some(at_ms), at_ms);
    Ok(match format {
        OutputFormat::Text => render_text(&explanation),
        OutputFormat::Json => format!("{}\n", render_json(&explanation)),
    })
}

/// A file's bytes without the line feed an editor ends it with (a JSON value is the same
/// without it; a protobuf value is taken as it is).
fn trim_newline(bytes: &[u8]) -> &[u8] {
    match bytes {
        [rest @ .., b'\n'] if rest.first() == Some(&b'{') => {
            rest.strip_suffix(b"\r").unwrap_or(rest)
        }
        _ => bytes,
    }
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

/// Completes on SIGTERM or SIGINT. A second one exits the process at once: the stop does
/// not wait for in-flight writes then, and nothing is committed past what was acknowledged
/// (commits only ever cover acknowledged writes), so they are read again after a restart.
/// The signals are counted by a handler of our own, which exits in the signal handler itself:
/// no task has to be scheduled for the second one. (Two signals sent so close together that
/// the first is still pending are one to the kernel.)
async fn shutdown_signal() {
    #[cfg(unix)]
    if stop_signals::install() {
        while stop_signals::received() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(unix)]
mod stop_signals {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The exit status after a second stop signal: 128 + SIGINT, as shells report an interrupt.
    const EXIT_SECOND_SIGNAL: i32 = 130;

    static RECEIVED: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn on_signal(_: libc::c_int) {
        // Only async-signal-safe calls here: an atomic and _exit.
        if RECEIVED.fetch_add(1, Ordering::SeqCst) >= 1 {
            unsafe { libc::_exit(EXIT_SECOND_SIGNAL) };
        }
    }

    /// Stop signals received so far.
    pub fn received() -> usize {
        RECEIVED.load(Ordering::SeqCst)
    }

    /// Handles SIGTERM and SIGINT. False if the handlers could not be installed.
    pub fn install() -> bool {
        [libc::SIGTERM, libc::SIGINT].into_iter().all(|signal| {
            // SAFETY: the handler only touches an atomic and calls _exit, both
            // async-signal-safe; the struct is zeroed, then filled, before the call.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                libc::sigemptyset(&mut action.sa_mask);
                action.sa_flags = libc::SA_RESTART;
                libc::sigaction(signal, &action, std::ptr::null_mut()) == 0
            }
        })
    }
}

/// Whether the command line or the environment asks for JSON logs (read before the arguments
/// parse, to report their own error as JSON).
fn json_logs_asked() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--log-format=json")
        || args
            .windows(2)
            .any(|pair| pair[0] == "--log-format" && pair[1] == "json")
        || std::env::var("CONSENT_ENFORCER_LOG_FORMAT").is_ok_and(|v| v == "json")
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
