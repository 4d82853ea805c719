//! The command line: config validation, start-up errors, the environment override, and the
//! metrics contract.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

fn run_binary(args: &[&str], config: &str) -> Output {
    let dir = std::env::temp_dir().join(unique("cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("enforcer.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(binary());
    command.args(args).arg("--config").arg(&path);
    command.env_remove("KAFKA_BOOTSTRAP_SERVERS");
    command.output().expect("run the binary")
}

const VALID: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
[input]
topics = ["events.raw"]
[consent]
topic = "consent.states"
[dead_letter]
topic = "events.dead-letter"
[[destination]]
name = "amplitude"
topic = "dest.amplitude"
categories = ["analytics"]
"#;

fn assert_config_error(config: &str, field: &str) {
    for command in ["check-config", "run"] {
        let output = run_binary(&[command], config);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        let error_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(
            error_lines.len(),
            1,
            "{command}: one error line expected: {stderr}"
        );
        assert!(
            error_lines[0].contains(field),
            "{command}: {field} not named in {stderr}"
        );
    }
}

fn assert_accepted(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn check_config_accepts_a_valid_config() {
    assert_accepted(&run_binary(&["check-config"], VALID));
}

#[test]
fn check_config_accepts_the_quickstart_config() {
    let output = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/quickstart/enforcer.toml"
        ))
        .output()
        .unwrap();
    assert_accepted(&output);
}

/// A config with `properties` added under `[kafka.properties]`.
fn with_kafka_properties(properties: &str) -> String {
    format!("{VALID}[kafka.properties]\n{properties}\n")
}

/// Neither command prints `secret`, on stdout or stderr, and both name `key` and exit 2.
fn assert_secret_not_printed(config: &str, key: &str, secret: &str) {
    for command in ["check-config", "run"] {
        let output = run_binary(&[command], config);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{command} printed the secret: {stdout}{stderr}"
        );
        assert!(stderr.contains(key), "{command}: {key} not named: {stderr}");
    }
}

#[test]
fn a_misspelled_password_property_is_refused_by_key_without_its_value() {
    assert_secret_not_printed(
        &with_kafka_properties(r#""sasl.pasword" = "hunter2-typo""#),
        "sasl.pasword",
        "hunter2-typo",
    );
}

#[test]
fn a_java_jaas_config_is_refused_without_the_password_it_holds() {
    assert_secret_not_printed(
        &with_kafka_properties(
            r#""sasl.jaas.config" = "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"hunter3-jaas\";""#,
        ),
        "sasl.jaas.config",
        "hunter3-jaas",
    );
}

#[test]
fn a_password_of_the_wrong_type_is_an_error_that_does_not_echo_it() {
    assert_secret_not_printed(
        &with_kafka_properties(r#""sasl.password" = 918273645"#),
        "line",
        "918273645",
    );
}

#[test]
fn a_refused_property_value_is_not_printed_even_when_its_key_looks_harmless() {
    assert_secret_not_printed(
        &with_kafka_properties(r#""linger.ms" = "not-a-number-4711""#),
        "linger.ms",
        "not-a-number-4711",
    );
}

#[test]
fn unknown_key_is_a_config_error_naming_it() {
    assert_config_error(
        &VALID.replace("[input]", "[input]\nmax_event_byte = 5"),
        "max_event_byte",
    );
}

#[test]
fn destination_without_categories_is_a_config_error() {
    assert_config_error(
        &VALID.replace("categories = [\"analytics\"]", ""),
        "categories",
    );
}

#[test]
fn duplicate_destination_name_is_a_config_error() {
    let config = format!(
        "{VALID}\n[[destination]]\nname = \"amplitude\"\ntopic = \"dest.b\"\ncategories = []\n"
    );
    assert_config_error(&config, "destination[1].name");
}

#[test]
fn duplicate_destination_topic_is_a_config_error() {
    let config = format!(
        "{VALID}\n[[destination]]\nname = \"b\"\ntopic = \"dest.amplitude\"\ncategories = []\n"
    );
    assert_config_error(&config, "destination[1].topic");
}

#[test]
fn topic_in_two_roles_is_a_config_error() {
    assert_config_error(
        &VALID.replace("topic = \"dest.amplitude\"", "topic = \"consent.states\""),
        "destination[0].topic",
    );
    assert_config_error(
        &VALID.replace("topic = \"events.dead-letter\"", "topic = \"events.raw\""),
        "dead_letter.topic",
    );
}

#[test]
fn missing_config_file_is_a_config_error() {
    let output = Command::new(binary())
        .args(["check-config", "--config", "/nonexistent/enforcer.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/enforcer.toml"));
}

#[test]
fn missing_topic_is_a_clear_start_up_error() {
    let s = Scenario::new("missing-topic", vec![Destination::new("warehouse", &[])]);
    let port = free_port();
    let config = s.dir.join("missing.toml");
    let text = s.config(port).replace(&s.dead_letter, "no-such-topic-here");
    std::fs::write(&config, text).unwrap();
    let mut enforcer = Enforcer::start(&config, port);
    let status = enforcer.wait_exit(WAIT);
    assert_eq!(status.code(), Some(1));
    let logs = enforcer.logs();
    assert!(
        logs.contains("no-such-topic-here") && logs.contains("dead_letter.topic"),
        "{logs}"
    );
}

#[test]
fn unreachable_broker_is_a_clear_error_after_a_bounded_time() {
    let s = Scenario::new("unreachable", vec![Destination::new("warehouse", &[])]);
    let port = free_port();
    let config = s.dir.join("unreachable.toml");
    let text = s
        .config(port)
        .replace("[kafka]\n", "[kafka]\nstartup_timeout_secs = 3\n");
    std::fs::write(&config, text).unwrap();
    let closed = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let mut enforcer = Enforcer::start_with_bootstrap(&config, port, &closed);
    let status = enforcer.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(20));
    let logs = enforcer.logs();
    assert!(
        logs.contains("could not reach Kafka") && logs.contains(&closed),
        "{logs}"
    );
}

#[test]
fn bootstrap_servers_environment_variable_overrides_the_config() {
    let s = Scenario::new("env-override", vec![Destination::new("warehouse", &[])]);
    let port = free_port();
    let config = s.dir.join("override.toml");
    let wrong = format!("127.0.0.1:{}", free_port());
    std::fs::write(&config, s.config(port).replace(bootstrap(), &wrong)).unwrap();
    // Enforcer::start sets KAFKA_BOOTSTRAP_SERVERS to the test broker.
    let enforcer = Enforcer::start(&config, port);
    enforcer.wait_ready();
}

#[test]
fn metrics_expose_the_documented_series() {
    let s = Scenario::new(
        "metrics",
        vec![Destination::new("amplitude", &["analytics"])],
    );
    let enforcer = s.start_ready();
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    s.send_events(&[
        ("u1", &track("u1", "m1")),
        ("u2", &track("u2", "m2")),
        ("x", "not json"),
    ]);
    s.wait_processed();
    enforcer.wait_metric("consent_enforcer_consent_states", 1.0);
    let text = enforcer.metrics();
    for series in [
        r#"consent_enforcer_events_delivered_total{destination="amplitude"}"#,
        r#"consent_enforcer_events_dropped_total{destination="amplitude",reason="no_consent"}"#,
        r#"consent_enforcer_events_dead_lettered_total{reason="not_json"}"#,
        "consent_enforcer_consent_states",
    ] {
        assert_eq!(metric_value(&text, series), 1.0, "{series} in\n{text}");
    }
    assert_eq!(
        metric_value(&text, "consent_enforcer_events_received_total"),
        3.0
    );
    for name in [
        "consent_enforcer_consent_records_rejected_total",
        "consent_enforcer_consent_lag_records",
        "consent_enforcer_input_lag_records",
        "consent_enforcer_writes_in_flight",
        "consent_enforcer_ready",
    ] {
        // Lag gauges come from librdkafka statistics every 5 s.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !enforcer.metrics().contains(name) {
            assert!(Instant::now() < deadline, "{name} missing");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // The producer gauges come from its statistics, also every 5 s: it has sent requests.
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric_value(
        &enforcer.metrics(),
        "consent_enforcer_producer_requests_total",
    ) <= 0.0
    {
        assert!(
            Instant::now() < deadline,
            "producer statistics never recorded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text_later = enforcer.metrics();
    for series in [
        r#"consent_enforcer_producer_queue_seconds{quantile="0.99"}"#,
        r#"consent_enforcer_producer_request_seconds{quantile="0.99"}"#,
        "consent_enforcer_producer_requests_in_flight",
    ] {
        let value = text_later
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok());
        assert!(
            value.is_some_and(|v| v >= 0.0),
            "{series} missing in\n{text_later}"
        );
    }
    // The build, the table's staleness and the process itself.
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "consent_enforcer_build_info{{version=\"{version}\",revision=\""
        )) && l.ends_with(" 1")),
        "build_info missing in\n{text}"
    );
    let staleness = metric_value(&text, "consent_enforcer_consent_staleness_seconds");
    assert!((0.0..5.0).contains(&staleness), "staleness {staleness}");
    for line in [
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    assert!(metric_value(&text, "process_resident_memory_bytes") > 1e6);
    // No user identifier ever becomes a label.
    assert!(!text.contains("\"u1\"") && !text.contains("\"u2\""));
}

#[test]
fn the_config_and_log_format_can_come_from_the_environment() {
    let s = Scenario::new("env-config", vec![Destination::new("warehouse", &[])]);
    let path = s.dir.join("from-env.toml");
    std::fs::write(&path, s.config(free_port())).unwrap();
    let output = Command::new(binary())
        .arg("check-config")
        .env("CONSENT_ENFORCER_CONFIG", &path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    // JSON logs from the environment: a config error is logged as one JSON object.
    let broken = s.dir.join("broken.toml");
    std::fs::write(&broken, "[kafka]\nbootstrap_servers = 7\n").unwrap();
    let output = Command::new(binary())
        .args(["run"])
        .env("CONSENT_ENFORCER_CONFIG", &broken)
        .env("CONSENT_ENFORCER_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}\n{stderr}"));
        assert_eq!(value["level"], "ERROR", "{line}");
    }
    // An argument error too (no config given at all).
    let output = Command::new(binary())
        .args(["--log-format", "json", "run"])
        .env_remove("CONSENT_ENFORCER_CONFIG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}

#[test]
fn a_second_stop_signal_exits_at_once() {
    let s = Scenario::new("second-signal", vec![Destination::new("warehouse", &[])]);
    // An idle instance can finish its stop before a second signal reaches it: then the try
    // says nothing, and is made again.
    for _ in 0..5 {
        let mut enforcer = s.start_ready();
        enforcer.signal("TERM");
        // Apart: two signals still pending together are one to the kernel.
        std::thread::sleep(Duration::from_millis(20));
        let _ = Command::new("kill")
            .args(["-INT", &enforcer.pid().to_string()])
            .status();
        let status = enforcer.wait_exit(Duration::from_secs(10));
        if status.code() == Some(0) {
            continue;
        }
        assert_eq!(status.code(), Some(130), "{}", enforcer.logs());
        return;
    }
    panic!("every stop was over before the second signal came");
}

#[test]
fn logs_carry_no_user_identifier_or_payload_at_info() {
    let s = Scenario::new(
        "log-hygiene",
        vec![Destination::new("amplitude", &["analytics"])],
    );
    let mut enforcer = s.start_ready();
    s.send_consent("secret-user-7", "{broken");
    s.send_events(&[
        ("secret-user-7", &track("secret-user-7", "secret-message")),
        ("k", "secret-payload-not-json"),
    ]);
    s.wait_processed();
    enforcer.signal("TERM");
    assert_eq!(enforcer.wait_exit(WAIT).code(), Some(0));
    let logs = enforcer.logs();
    for secret in ["secret-user-7", "secret-message", "secret-payload"] {
        assert!(!logs.contains(secret), "{secret} leaked into logs:\n{logs}");
    }
}

#[test]
fn uncompacted_consent_topic_is_warned_about() {
    let s = Scenario::new("not-compacted", vec![Destination::new("warehouse", &[])]);
    let plain = unique("plain-consent");
    create_topic(&plain, 1, false);
    let port = free_port();
    let config = s.dir.join("plain.toml");
    std::fs::write(&config, s.config(port).replace(&s.consent, &plain)).unwrap();
    let enforcer = Enforcer::start(&config, port);
    enforcer.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !enforcer.logs().contains("not compacted") {
        assert!(
            Instant::now() < deadline,
            "no warning in:\n{}",
            enforcer.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_input_topic_with_producer_timestamps_is_warned_about_and_one_with_log_append_time_is_not() {
    let s = Scenario::new("create-time", vec![Destination::new("warehouse", &[])]);
    let warned = |enforcer: &Enforcer| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = enforcer.logs();
            if logs.contains("topic settings checked") {
                return logs.contains("message.timestamp.type=LogAppendTime");
            }
            assert!(Instant::now() < deadline, "no check in:\n{logs}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    std::env::set_var(
        "ENFORCER_LOG",
        "info,consent_enforcer::kafka::topic_configs=debug",
    );
    let mut enforcer = s.start_ready();
    assert!(warned(&enforcer), "CreateTime not warned about");
    enforcer.signal("TERM");
    assert_eq!(enforcer.wait_exit(WAIT).code(), Some(0));
    set_topic_configs(&s.input, &[("message.timestamp.type", "LogAppendTime")]);
    let enforcer = s.start_ready();
    assert!(!warned(&enforcer), "LogAppendTime warned about");
}

/// Runs `check-config` on `config` written with `mode`, with `env` set.
fn check_config_with(config: &str, mode: u32, env: &[(&str, &str)]) -> Output {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(unique("cli-secret"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("enforcer.toml");
    std::fs::write(&path, config).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let mut command = Command::new(binary());
    command.args(["check-config", "--config"]).arg(&path);
    command.env_remove("KAFKA_BOOTSTRAP_SERVERS");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run the binary")
}

const SASL: &str = r#""security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanisms" = "PLAIN"
"sasl.username" = "enforcer""#;

#[test]
fn a_secret_can_come_from_an_environment_variable() {
    let config = with_kafka_properties(&format!(
        "{SASL}\n\"sasl.password\" = \"${{CE_TEST_KAFKA_PASSWORD}}\""
    ));
    let output = check_config_with(&config, 0o600, &[("CE_TEST_KAFKA_PASSWORD", "s3cr3t-env")]);
    assert_accepted(&output);
    let output = check_config_with(&config, 0o600, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CE_TEST_KAFKA_PASSWORD"), "{stderr}");
    assert!(stderr.contains("sasl.password"), "{stderr}");
}

#[test]
fn a_secret_can_come_from_a_file() {
    let dir = std::env::temp_dir().join(unique("cli-secret-file"));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("password");
    std::fs::write(&secret, "s3cr3t-file\n").unwrap();
    let config = with_kafka_properties(&format!(
        "{SASL}\n\"sasl.password_file\" = \"{}\"",
        secret.display()
    ));
    assert_accepted(&check_config_with(&config, 0o600, &[]));
    let missing = with_kafka_properties(&format!(
        "{SASL}\n\"sasl.password_file\" = \"{}\"",
        dir.join("nope").display()
    ));
    let output = check_config_with(&missing, 0o600, &[]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_readable_config_that_writes_a_secret_out_is_warned_about() {
    let config = with_kafka_properties(&format!("{SASL}\n\"sasl.password\" = \"s3cr3t-inline\""));
    let output = check_config_with(&config, 0o644, &[]);
    assert_accepted(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-inline"), "{stderr}");
    let output = check_config_with(&config, 0o600, &[]);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("chmod"));
}

#[test]
fn a_secret_of_the_wrong_type_in_an_inline_table_is_not_echoed() {
    let config = VALID.replace(
        "bootstrap_servers = \"127.0.0.1:9092\"",
        "bootstrap_servers = \"127.0.0.1:9092\"\nproperties = { \"sasl.password\" = 56473829 }",
    );
    assert_secret_not_printed(&config, "line", "56473829");
}

#[test]
fn a_refusal_when_a_client_is_created_is_a_config_error() {
    let output = run_binary(
        &["check-config"],
        &with_kafka_properties(
            "\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"PLAINN\"",
        ),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PLAINN") || stderr.contains("SASL"),
        "{stderr}"
    );
}

#[test]
fn a_variable_in_any_string_value_is_replaced_and_an_unset_one_names_its_field() {
    let s = Scenario::new(
        "env-anywhere",
        vec![Destination::new("amp", &["analytics"])],
    );
    let path = s.dir.join("vars.toml");
    let config = s
        .config(free_port())
        .replace("name = \"amp\"", "name = \"amp-${CE_TEST_SUFFIX}\"");
    std::fs::write(&path, &config).unwrap();
    let event = s.dir.join("event.json");
    std::fs::write(&event, track("u1", "m1")).unwrap();
    let output = Command::new(binary())
        .args(["explain", "--config"])
        .arg(&path)
        .arg("--event")
        .arg(&event)
        .env("CE_TEST_SUFFIX", "eu-1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("amp-eu-1"),
        "{output:?}"
    );
    let output = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("CE_TEST_SUFFIX")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("destination[0].name") && stderr.contains("CE_TEST_SUFFIX"),
        "{stderr}"
    );
}
