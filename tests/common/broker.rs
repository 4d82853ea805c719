//! The broker the tests run against, and the clients every helper shares.
//!
//! The broker is `CONSENT_ENFORCER_TEST_BOOTSTRAP` if set; otherwise the project's local
//! broker on 127.0.0.1:19092, started by `scripts/kafka.sh` if it is not running. The tests
//! never read `KAFKA_BOOTSTRAP_SERVERS`, so they cannot create topics on a cluster it points
//! at by chance.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;

pub const TEST_BOOTSTRAP_ENV: &str = "CONSENT_ENFORCER_TEST_BOOTSTRAP";
const LOCAL_TEST_PORT: &str = "19092";

/// Generous bound for anything that waits on the broker.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn bootstrap() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(servers) = std::env::var(TEST_BOOTSTRAP_ENV) {
            return servers;
        }
        kafka_script("fresh", LOCAL_TEST_PORT);
        format!("127.0.0.1:{LOCAL_TEST_PORT}")
    })
}

/// Runs `scripts/kafka.sh COMMAND` for the broker on 127.0.0.1:`port`; panics if it fails.
pub fn kafka_script(command: &str, port: &str) {
    kafka_script_with(command, port, &[]);
}

/// `kafka_script` with more environment for the script (e.g. `KAFKA_SECURE`); returns what it
/// printed on stdout.
pub fn kafka_script_with(command: &str, port: &str, env: &[(&str, &str)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg(command)
        .env("KAFKA_PORT", port)
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/kafka.sh");
    assert!(
        output.status.success(),
        "scripts/kafka.sh {command} failed for the broker on port {port}"
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub(super) fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

pub(super) fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client")
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub(super) fn plain_consumer(isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("test-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}
