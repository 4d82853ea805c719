//! The service driven in process, as `service::run`'s documentation says it is meant to be:
//! a config, a metrics handle and a shutdown future. No child process, no signal.

mod common;

use std::time::Duration;

use common::*;
use consent_enforcer::config::Config;
use metrics_exporter_prometheus::PrometheusBuilder;

#[test]
fn the_service_driven_in_process_judges_events_and_stops_cleanly_when_its_shutdown_future_completes(
) {
    let s = Scenario::new(
        "in-process",
        vec![Destination::new("amplitude", &["analytics"])],
    );
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    s.send_consent("u2", &consent(&[], &["analytics"], "2026-11-22T10:00:00Z"));
    let port = free_port();
    let path = s.dir.join("in-process.toml");
    // The duration keys with units, in place of the scenario's `*_ms`/`*_secs` aliases.
    let text = s.config(port).replace(
        "commit_interval_ms = 200\ndrain_timeout_secs = 20",
        "commit_interval = \"200ms\"\ndrain_timeout = \"20s\"",
    );
    assert!(text.contains("drain_timeout = \"20s\""), "{text}");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).expect("the scenario's config loads");

    // A recorder of its own: this test binary installs no global one, so the counters the
    // pipeline increments go nowhere, and /metrics renders what the handle holds.
    let handle = PrometheusBuilder::new().build_recorder().handle();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = runtime.spawn(consent_enforcer::service::run(config, handle, async move {
        let _ = stopped.await;
    }));

    wait_ready(port);
    s.send_events(&[("u1", &track("u1", "m1")), ("u2", &track("u2", "m2"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);

    stop.send(()).unwrap();
    let result = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(40), service).await })
        .expect("the service stops within the drain timeout once its shutdown future completes")
        .expect("the service task does not panic");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        http_get(port, "/healthz").is_none(),
        "the HTTP listener is closed once the service has stopped"
    );
}

fn wait_ready(port: u16) {
    let deadline = std::time::Instant::now() + WAIT;
    while http_get(port, "/readyz").is_none_or(|(status, _)| status != 200) {
        assert!(std::time::Instant::now() < deadline, "not ready in time");
        std::thread::sleep(Duration::from_millis(100));
    }
}
