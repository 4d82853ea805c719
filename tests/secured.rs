//! Secured clusters: the enforcer end to end through a SASL_PLAINTEXT listener (SCRAM-SHA-512)
//! and through an SSL listener that requires a client certificate (mTLS); a wrong password
//! fails start-up, saying so, without the secret in the logs or on /metrics.
//!
//! This binary starts its own broker (`KAFKA_SECURE=1 scripts/kafka.sh` on 127.0.0.1:19292:
//! SASL_PLAINTEXT on 19294, SSL on 19295), rather than reconfigure the one the other tests
//! share, and stops it when its last test ends. The test helpers use its PLAINTEXT listener.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;

const PORT: u16 = 19292;
const SASL_PORT: u16 = PORT + 2;
const SSL_PORT: u16 = PORT + 3;
const USER: &str = "enforcer";
/// Fixed, so that a broker left running by an earlier run still knows it.
const PASSWORD: &str = "scram-test-secret-7f3a9c";

fn script_env() -> [(&'static str, &'static str); 3] {
    [
        ("KAFKA_SECURE", "1"),
        ("KAFKA_SCRAM_USER", USER),
        ("KAFKA_SCRAM_PASSWORD", PASSWORD),
    ]
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The tests of this binary running now, and whether this binary started the broker.
static BROKER: Mutex<(usize, bool)> = Mutex::new((0, false));

fn lock() -> MutexGuard<'static, (usize, bool)> {
    BROKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Holds the secured broker for one test; the last test to end stops it, if this binary
/// started it.
struct SecuredBroker;

fn secured_broker() -> SecuredBroker {
    let mut state = lock();
    if state.0 == 0 {
        let port = PORT.to_string();
        // A broker already running is used as it is, with the test's SCRAM user added.
        state.1 = !listening(SASL_PORT);
        kafka_script_with("fresh", &port, &script_env());
        assert!(
            listening(SASL_PORT) && listening(SSL_PORT),
            "the broker on 127.0.0.1:{PORT} has no secured listeners: it was started without \
             KAFKA_SECURE=1; stop it (KAFKA_PORT={PORT} scripts/kafka.sh stop)"
        );
        // The helpers read the broker address once, from here on.
        std::env::set_var(TEST_BOOTSTRAP_ENV, format!("127.0.0.1:{PORT}"));
        assert_eq!(bootstrap(), format!("127.0.0.1:{PORT}"));
    }
    state.0 += 1;
    SecuredBroker
}

impl Drop for SecuredBroker {
    fn drop(&mut self) {
        let mut state = lock();
        state.0 -= 1;
        if state.0 == 0 && state.1 {
            kafka_script_with("stop", &PORT.to_string(), &script_env());
            state.1 = false;
        }
    }
}

fn tls_file(name: &str) -> String {
    let dir = PathBuf::from(kafka_script_with(
        "tls-dir",
        &PORT.to_string(),
        &script_env(),
    ));
    dir.join(name).display().to_string()
}

fn sasl_properties(password: &str) -> String {
    format!(
        "\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\
         \"sasl.username\" = \"{USER}\"\n\"sasl.password\" = \"{password}\"\n"
    )
}

fn mtls_properties() -> String {
    format!(
        "\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = {:?}\n\
         \"ssl.certificate.location\" = {:?}\n\"ssl.key.location\" = {:?}\n",
        tls_file("ca.pem"),
        tls_file("client.pem"),
        tls_file("client.key"),
    )
}

fn scenario(name: &str, kafka_properties: String) -> Scenario {
    let mut s = Scenario::new(
        name,
        vec![
            Destination::new("amplitude", &["analytics"]),
            Destination::new("warehouse", &[]),
        ],
    );
    s.kafka_properties = kafka_properties;
    s
}

/// Consent and events in through the PLAINTEXT listener, the enforcer through `servers`:
/// each destination gets what consent allows, and SIGTERM stops it cleanly. No secret in its
/// logs or on /metrics.
fn delivers_by_consent_through(s: &Scenario, servers: &str) {
    s.send_consent(
        "u1",
        &consent(&["analytics"], &[], &rfc3339_from_now(-60_000)),
    );
    s.send_consent(
        "u2",
        &consent(&[], &["analytics"], &rfc3339_from_now(-60_000)),
    );
    let mut enforcer = s.start_through(servers);
    enforcer.wait_ready();
    s.send_events(&[("u1", &track("u1", "m1")), ("u2", &track("u2", "m2"))]);
    s.wait_processed_by(&enforcer);
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m1", "m2"]);
    let metrics = enforcer.metrics();
    assert!(metrics.contains("consent_enforcer_events_delivered_total"));
    assert!(!metrics.contains(PASSWORD), "{metrics}");
    enforcer.signal("TERM");
    assert_eq!(
        enforcer.wait_exit(WAIT).code(),
        Some(0),
        "{}",
        enforcer.logs()
    );
    let logs = enforcer.logs();
    assert!(
        !logs.contains(PASSWORD),
        "the password is in the log:\n{logs}"
    );
}

#[test]
fn events_flow_end_to_end_through_a_sasl_scram_listener() {
    let _broker = secured_broker();
    let s = scenario("sasl", sasl_properties(PASSWORD));
    delivers_by_consent_through(&s, &format!("127.0.0.1:{SASL_PORT}"));
}

#[test]
fn events_flow_end_to_end_through_an_ssl_listener_with_a_client_certificate() {
    let _broker = secured_broker();
    let s = scenario("mtls", mtls_properties());
    delivers_by_consent_through(&s, &format!("127.0.0.1:{SSL_PORT}"));
}

#[test]
fn wrong_password_fails_start_up_saying_authentication_failed() {
    let _broker = secured_broker();
    let wrong = "not-the-scram-password-41d0";
    let s = scenario("sasl-wrong-password", sasl_properties(wrong));
    let startup_timeout = Duration::from_secs(10);
    let port = free_port();
    let path = s.dir.join("enforcer.toml");
    let config = s.config(port).replace(
        "[kafka]\n",
        &format!(
            "[kafka]\nstartup_timeout_secs = {}\n",
            startup_timeout.as_secs()
        ),
    );
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let mut enforcer =
        Enforcer::start_with_bootstrap(&path, port, &format!("127.0.0.1:{SASL_PORT}"));
    // /metrics, read while it runs.
    let mut scraped = Vec::new();
    let status = loop {
        if let Some(status) = enforcer.try_exit() {
            break status;
        }
        assert!(
            started.elapsed() < startup_timeout + Duration::from_secs(5),
            "still running {:?} after start; log:\n{}",
            started.elapsed(),
            enforcer.logs()
        );
        if let Some((_, body)) = enforcer.get("/metrics") {
            scraped.push(body);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "exited {status} after {:?}; /metrics read {} times",
        started.elapsed(),
        scraped.len()
    );
    let logs = enforcer.logs();
    assert_eq!(status.code(), Some(1), "{logs}");
    let error = logs
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_default();
    assert!(error.contains("authentication failed"), "{logs}");
    assert!(!logs.contains(wrong), "the password is in the log:\n{logs}");
    assert!(!scraped.is_empty(), "/metrics never answered; log:\n{logs}");
    for body in &scraped {
        assert!(
            !body.contains(wrong),
            "the password is on /metrics:\n{body}"
        );
    }
}
