//! The HTTP endpoints: `GET /metrics` (Prometheus text), `/healthz` (the process is alive)
//! and `/readyz` (200 once the consent table is loaded and events are judged, 503 before and
//! while stopping).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::internal_events::{self as events, InternalEvent};

#[derive(Clone)]
pub struct Endpoints {
    pub metrics: PrometheusHandle,
    pub ready: Arc<AtomicBool>,
}

/// The last rendering of `/metrics`, and when it began. One rendering at a time: requests
/// that arrive while one runs share the next, so a flood of scrapes costs one rendering per
/// rendering's time, not one each, and every answer is as recent as its request.
#[derive(Default)]
struct Rendered(tokio::sync::Mutex<Option<(Instant, Bytes)>>);

impl Rendered {
    async fn get(&self, metrics: &PrometheusHandle) -> Bytes {
        let asked = Instant::now();
        let mut last = self.0.lock().await;
        match &*last {
            Some((began, body)) if *began >= asked => body.clone(),
            _ => {
                let began = Instant::now();
                let mut text = metrics.render();
                text.push_str(&crate::delivery::producer_stats::exposition());
                text.push_str(&crate::process_metrics::exposition());
                let body = Bytes::from(text);
                *last = Some((began, body.clone()));
                body
            }
        }
    }
}

/// Binds the listener now, so that a taken port is a start-up error, not a later surprise.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// A client must send a request's headers within this long after the connection opens
/// (or, on a kept-alive connection, after the previous response), or it is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection lives longer than this, however it behaves (a client that never reads its
/// response, a keep-alive connection left open).
const CONNECTION_MAX_AGE: Duration = Duration::from_secs(60);
/// Open connections at most; past it the oldest is closed, so that a flood of slow
/// connections cannot keep a health probe out.
const MAX_CONNECTIONS: usize = 512;
/// The longest pause after a failed `accept` (too many open files): doubling from 10 ms.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves until `shutdown` changes.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections: VecDeque<JoinHandle<()>> = VecDeque::new();
    let mut backoff = Duration::ZERO;
    let rendered = Arc::new(Rendered::default());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::ZERO;
                    stream
                }
                Err(error) => {
                    // Logged once per run of failures; the pause keeps the loop from
                    // spinning while file descriptors are exhausted.
                    if backoff.is_zero() {
                        events::HttpAcceptFailed { error: &error }.emit();
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), ACCEPT_BACKOFF_MAX);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        connections.retain(|connection| !connection.is_finished());
        while connections.len() >= MAX_CONNECTIONS {
            if let Some(oldest) = connections.pop_front() {
                oldest.abort();
            }
        }
        let endpoints = endpoints.clone();
        let rendered = rendered.clone();
        connections.push_back(tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (endpoints, rendered) = (endpoints.clone(), rendered.clone());
                async move { Ok::<_, Infallible>(respond(&endpoints, &rendered, &request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // Errors here are client disconnects and timeouts; nothing to act on.
            let _ = tokio::time::timeout(CONNECTION_MAX_AGE, connection).await;
        }));
    }
}

async fn respond(
    endpoints: &Endpoints,
    rendered: &Rendered,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned());
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = Response::new(Full::new(rendered.get(&endpoints.metrics).await));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if endpoints.ready.load(Ordering::SeqCst) => {
            text(StatusCode::OK, "ready\n".to_owned())
        }
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: loading the consent table or stopping\n".to_owned(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".to_owned(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// The address the listener is bound to (for logs when port 0 was asked for).
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
