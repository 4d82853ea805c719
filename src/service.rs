//! The service as a whole: the HTTP endpoints plus the pipeline thread, stopped by a future
//! (mini-redis style), so tests and `main` drive it the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{oneshot, watch};

use crate::config::Config;
use crate::http::{self, Endpoints};
use crate::pipeline::{self, PipelineError, Signals};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on metrics.listen = {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("the pipeline did not stop within {0} s of the shutdown signal")]
    StopTimeout(u64),
    #[error("the pipeline thread panicked")]
    Panicked,
}

/// Grace beyond `delivery.drain_timeout_secs` for the pipeline to return once its deadline
/// has passed. Every wait of the stop is bounded by that deadline, except librdkafka calls
/// that ignore their timeout while a broker does not answer (`send_offsets_to_transaction`
/// waits for its request's `socket.timeout.ms`): past the grace the service exits 1 without
/// them, and the open transaction is aborted by the next start (or the broker's timeout).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Runs until `shutdown` completes (then drains and commits) or the pipeline fails.
pub async fn run(
    config: Config,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let addr: SocketAddr = config
        .metrics
        .listen
        .parse()
        .map_err(|_| ServiceError::Listen {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source: std::io::Error::other("not an address"),
        })?;
    let listener = http::bind(addr)
        .await
        .map_err(|source| ServiceError::Listen { addr, source })?;
    tracing::info!(addr = ?http::local_addr(&listener), "serving /metrics, /healthz, /readyz");

    // Before the start-up checks, which can take `kafka.startup_timeout`: a scrape meanwhile
    // sees every series known in advance (not ready), not an empty page.
    crate::telemetry::describe();
    crate::telemetry::register_known_series();
    metrics::gauge!(crate::telemetry::READY).set(0.0);
    let signals = Signals::default();
    let (stop_http, http_stopped) = watch::channel(false);
    let http_task = tokio::spawn(http::serve(
        listener,
        Endpoints {
            metrics: metrics.clone(),
            ready: signals.ready.clone(),
        },
        http_stopped,
    ));
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            metrics.run_upkeep();
        }
    });

    let topic_configs_check = tokio::spawn({
        let config = config.clone();
        async move { crate::kafka::warn_about_topic_configs(&config).await }
    });

    let (done_tx, mut done_rx) = oneshot::channel();
    let pipeline_signals = signals.clone();
    let drain_timeout = config.delivery.drain_timeout().value;
    std::thread::Builder::new()
        .name("pipeline".to_owned())
        .spawn(move || {
            let result = pipeline::run(&config, &pipeline_signals);
            let _ = done_tx.send(result);
        })
        .map_err(|_| ServiceError::Panicked)?;

    tokio::pin!(shutdown);
    let result = tokio::select! {
        finished = &mut done_rx => finished.map_err(|_| ServiceError::Panicked)?,
        _ = &mut shutdown => {
            tracing::info!("shutdown requested");
            if let Ok(mut deadline) = signals.stop_deadline.lock() {
                *deadline = Some(std::time::Instant::now() + drain_timeout);
            }
            signals.stopping.store(true, Ordering::SeqCst);
            let bound = drain_timeout + CLOSE_GRACE;
            match tokio::time::timeout(bound, &mut done_rx).await {
                Ok(finished) => finished.map_err(|_| ServiceError::Panicked)?,
                Err(_) => return Err(ServiceError::StopTimeout(bound.as_secs())),
            }
        }
    };
    let _ = stop_http.send(true);
    let _ = http_task.await;
    upkeep.abort();
    topic_configs_check.abort();
    result.map_err(ServiceError::from)
}
