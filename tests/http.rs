//! The HTTP listener against hostile clients: slow connections neither keep a probe out nor
//! stay open, and an idle kept-alive connection is closed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// The listener's header-read timeout (src/http.rs), and a margin for a loaded machine.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
const MARGIN: Duration = Duration::from_secs(5);

/// Raises this process's open-file limit to its hard limit; returns the limit.
fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Reads until the server closes the connection or `until` passes; true if it closed.
fn closed_by(stream: &mut TcpStream, until: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream
            .set_read_timeout(Some(left))
            .expect("set read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn amplitude() -> Vec<Destination> {
    vec![Destination::new("amplitude", &["analytics"])]
}

#[test]
fn two_thousand_slow_connections_neither_keep_healthz_out_nor_stay_open() {
    let count = 2_000.min(raise_open_files_limit().saturating_sub(200) as usize);
    let s = Scenario::new("http-slow", amplitude());
    let enforcer = s.start_ready();
    let addr = format!("127.0.0.1:{}", enforcer.metrics_port);
    let mut slow = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(&addr).expect("connect");
        // Headers started and never finished.
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: enforcer\r\n")
            .expect("partial request");
        slow.push(stream);
    }
    let asked = Instant::now();
    assert_eq!(
        enforcer.get("/healthz").map(|r| r.0),
        Some(200),
        "after {count} slow connections"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "/healthz took {:?}",
        asked.elapsed()
    );
    // Each connection's timeout runs from its own start: the last one started when the
    // loop above ended (on a loaded machine the loop itself can take seconds).
    let until = asked + HEADER_READ_TIMEOUT + MARGIN;
    let open = slow
        .iter_mut()
        .map(|stream| closed_by(stream, until))
        .filter(|closed| !closed)
        .count();
    assert_eq!(open, 0, "of {count} slow connections, {open} still open");
    assert_eq!(enforcer.get("/healthz").map(|r| r.0), Some(200));
}

#[test]
fn an_idle_kept_alive_connection_is_closed() {
    let s = Scenario::new("http-idle", amplitude());
    let enforcer = s.start_ready();
    let mut stream =
        TcpStream::connect(format!("127.0.0.1:{}", enforcer.metrics_port)).expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: enforcer\r\n\r\n")
        .expect("request");
    let mut response = [0u8; 512];
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set read timeout");
    let n = stream.read(&mut response).expect("response");
    assert!(response[..n].starts_with(b"HTTP/1.1 200"));
    // Kept alive, then nothing more is sent.
    let answered = Instant::now();
    assert!(
        closed_by(&mut stream, answered + HEADER_READ_TIMEOUT + MARGIN),
        "still open {:?} after the response",
        answered.elapsed()
    );
}
