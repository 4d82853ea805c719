//! The enforcer as a child process, and its HTTP endpoint.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::broker::{bootstrap, WAIT};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The enforcer binary, as a child process.
pub struct Enforcer {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_consent-enforcer")
}

impl Enforcer {
    pub fn start(config: &Path, metrics_port: u16) -> Enforcer {
        Enforcer::start_with_bootstrap(config, metrics_port, bootstrap())
    }

    /// Starts with `KAFKA_BOOTSTRAP_SERVERS` set to `servers`.
    pub fn start_with_bootstrap(config: &Path, metrics_port: u16, servers: &str) -> Enforcer {
        let log = config.with_extension("log");
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .env("KAFKA_BOOTSTRAP_SERVERS", servers)
            .env(
                "RUST_LOG",
                std::env::var("ENFORCER_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the enforcer");
        Enforcer {
            child,
            metrics_port,
            log,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path of the HTTP endpoint: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.metrics_port, path)
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((200, _)) = self.get("/readyz") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "enforcer never became ready; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one series, e.g. `consent_enforcer_events_dropped_total{destination="a",reason="denied"}`;
    /// labels may be given in any order.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    /// Waits until a series reaches at least `value`.
    pub fn wait_metric(&self, series: &str, value: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let current = self.metric(series);
            if current >= value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {current}, expected {value}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "enforcer did not exit within {timeout:?}; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    pub fn kill9(&mut self) {
        self.signal("KILL");
        self.wait_exit(WAIT);
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Finds a series in Prometheus text; 0 if absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    let mut wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    wanted.sort_unstable();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (line_name, line_labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        if line_name != name {
            continue;
        }
        let mut have: Vec<&str> = line_labels.split(',').filter(|l| !l.is_empty()).collect();
        have.sort_unstable();
        if have == wanted {
            return value.parse().unwrap_or(f64::NAN);
        }
    }
    0.0
}
