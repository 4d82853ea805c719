//! The producer's own latency, from librdkafka's statistics.
//!
//! librdkafka sends one partition's batch per produce request and, with idempotence, keeps
//! at most five requests in flight per broker, which handles them one at a time. With many
//! destination partitions on one broker the producer is bound by that window: each partition
//! waits its turn (about partitions / 5 round trips), and every millisecond the broker adds
//! to a request is multiplied. These gauges show it: requests in flight pinned at 5 and the
//! queue time far above `linger.ms`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use metrics::{counter, gauge, Counter, Gauge};
use rdkafka::statistics::Window;
use rdkafka::Statistics;

use crate::telemetry::{
    PRODUCER_QUEUE_SECONDS, PRODUCER_REQUESTS, PRODUCER_REQUESTS_IN_FLIGHT,
    PRODUCER_REQUEST_SECONDS,
};

/// The two latency summaries, rendered by [`exposition`]: the metrics crate has no summary
/// type for data it did not sample itself.
static LATENCY: Mutex<Latency> = Mutex::new(Latency {
    queue: Family::EMPTY,
    request: Family::EMPTY,
});

struct Latency {
    queue: Family,
    request: Family,
}

/// One summary: the last window's quantiles (worst broker), and every window's sum and count
/// added up, which aggregate across instances (`rate(_sum) / rate(_count)`: the mean).
#[derive(Clone, Copy)]
struct Family {
    quantiles: Option<Quantiles>,
    sum_micros: i64,
    count: i64,
}

impl Family {
    const EMPTY: Family = Family {
        quantiles: None,
        sum_micros: 0,
        count: 0,
    };

    fn render(&self, text: &mut String, name: &str, help: &str) {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} summary");
        let quantiles = self.quantiles.unwrap_or_default();
        for (quantile, value) in [("0.5", quantiles.p50), ("0.99", quantiles.p99)] {
            let _ = writeln!(text, "{name}{{quantile=\"{quantile}\"}} {}", micros(value));
        }
        let _ = writeln!(text, "{name}_sum {}", micros(self.sum_micros));
        let _ = writeln!(text, "{name}_count {}", self.count.max(0));
    }
}

/// The producer latency summaries in Prometheus text format.
pub fn exposition() -> String {
    let latency = LATENCY.lock().unwrap_or_else(PoisonError::into_inner);
    let mut text = String::new();
    latency.queue.render(
        &mut text,
        PRODUCER_QUEUE_SECONDS,
        "Time writes waited in the producer before their produce request (librdkafka int_latency): quantiles of the last statistics interval, worst broker; sum and count of every interval, all brokers.",
    );
    latency.request.render(
        &mut text,
        PRODUCER_REQUEST_SECONDS,
        "Produce request round trip to the broker (librdkafka rtt): quantiles of the last statistics interval, worst broker; sum and count of every interval, all brokers.",
    );
    text
}

/// One producer's statistics into the metrics. A new one is registered for each producer
/// (exactly-once replaces its producer after a fatal error), so its request count starts
/// again from zero: it is added as the difference from the last statistics.
pub struct ProducerStats {
    requests: Counter,
    last_requests: AtomicU64,
    in_flight: Gauge,
}

impl ProducerStats {
    pub fn register() -> ProducerStats {
        ProducerStats {
            requests: counter!(PRODUCER_REQUESTS),
            last_requests: AtomicU64::new(0),
            in_flight: gauge!(PRODUCER_REQUESTS_IN_FLIGHT),
        }
    }

    pub fn record(&self, statistics: &Statistics) {
        let mut summary = Summary::default();
        // Bootstrap entries (node id -1) only carry metadata requests before the cluster is
        // known; they are counted in `requests` like the rest.
        for broker in statistics.brokers.values() {
            summary.requests += broker.tx;
            summary.in_flight += broker.waitresp_cnt.max(0);
            summary.queue = summary.queue.worst(broker.int_latency.as_ref());
            summary.request = summary.request.worst(broker.rtt.as_ref());
            for (window, into) in [
                (broker.int_latency.as_ref(), &mut summary.queue_total),
                (broker.rtt.as_ref(), &mut summary.request_total),
            ] {
                if let Some(window) = window.filter(|w| w.cnt > 0) {
                    into.0 += window.sum.max(0);
                    into.1 += window.cnt;
                }
            }
        }
        let last = self.last_requests.swap(summary.requests, Ordering::SeqCst);
        self.requests
            .increment(summary.requests.saturating_sub(last));
        self.in_flight.set(summary.in_flight as f64);
        let mut guard = LATENCY.lock().unwrap_or_else(PoisonError::into_inner);
        let latency = &mut *guard;
        for (family, quantiles, (sum, count)) in [
            (&mut latency.queue, summary.queue, summary.queue_total),
            (&mut latency.request, summary.request, summary.request_total),
        ] {
            family.quantiles = Some(quantiles);
            family.sum_micros = family.sum_micros.saturating_add(sum);
            family.count = family.count.saturating_add(count);
        }
    }
}

#[derive(Default)]
struct Summary {
    requests: u64,
    in_flight: i64,
    queue: Quantiles,
    request: Quantiles,
    /// Sum (microseconds) and count of the interval's samples, all brokers.
    queue_total: (i64, i64),
    request_total: (i64, i64),
}

/// Microseconds, as librdkafka reports them.
#[derive(Default, Clone, Copy, PartialEq, Debug)]
struct Quantiles {
    p50: i64,
    p99: i64,
}

impl Quantiles {
    /// The worse of `self` and a broker's window (empty windows report zeros).
    fn worst(self, window: Option<&Window>) -> Quantiles {
        match window {
            Some(window) if window.cnt > 0 && window.p99 > self.p99 => Quantiles {
                p50: window.p50,
                p99: window.p99,
            },
            _ => self,
        }
    }
}

fn micros(value: i64) -> f64 {
    value.max(0) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(cnt: i64, p50: i64, p99: i64) -> Window {
        Window {
            cnt,
            p50,
            p99,
            ..Window::default()
        }
    }

    #[test]
    fn the_worst_broker_window_with_samples_wins() {
        let quiet = Quantiles::default();
        let busy = quiet.worst(Some(&window(10, 4_000, 90_000)));
        assert_eq!(
            busy,
            Quantiles {
                p50: 4_000,
                p99: 90_000
            }
        );
        assert_eq!(busy.worst(Some(&window(10, 9_000, 20_000))), busy);
        // A window without samples says nothing, even with stale numbers in it.
        assert_eq!(quiet.worst(Some(&window(0, 1, 500_000))), quiet);
        assert_eq!(busy.worst(None), busy);
    }

    #[test]
    fn statistics_become_the_producer_gauges() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let json = r#"{"name":"p","client_id":"c","type":"producer","ts":1,"time":1,"age":1,
            "replyq":0,"msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"simple_cnt":0,
            "metadata_cache_cnt":0,"tx":0,"tx_bytes":0,"rx":0,"rx_bytes":0,"txmsgs":0,
            "txmsg_bytes":0,"rxmsgs":0,"rxmsg_bytes":0,"brokers":{
              "a":{"name":"a","nodeid":1,"nodename":"a","source":"learned","state":"UP",
                "stateage":1,"outbuf_cnt":0,"outbuf_msg_cnt":0,"waitresp_cnt":5,
                "waitresp_msg_cnt":0,"tx":1200,"txbytes":0,"txerrs":0,"txretries":0,
                "txidle":0,"req_timeouts":0,"rx":0,"rxbytes":0,"rxerrs":0,"rxcorriderrs":0,
                "rxpartial":0,"rxidle":0,"req":{},"zbuf_grow":0,"buf_grow":0,"wakeups":0,
                "connects":1,"disconnects":0,
                "int_latency":{"min":0,"max":0,"avg":0,"sum":9000000,"cnt":900,"stddev":0,
                  "hdrsize":0,"p50":12000,"p75":0,"p90":0,"p95":0,"p99":95000,"p99_99":0,
                  "outofrange":0},
                "rtt":{"min":0,"max":0,"avg":0,"sum":0,"cnt":900,"stddev":0,"hdrsize":0,
                  "p50":2000,"p75":0,"p90":0,"p95":0,"p99":6000,"p99_99":0,"outofrange":0},
                "toppars":{}},
              "b":{"name":"b","nodeid":-1,"nodename":"b","source":"configured","state":"UP",
                "stateage":1,"outbuf_cnt":0,"outbuf_msg_cnt":0,"waitresp_cnt":0,
                "waitresp_msg_cnt":0,"tx":3,"txbytes":0,"txerrs":0,"txretries":0,
                "txidle":0,"req_timeouts":0,"rx":0,"rxbytes":0,"rxerrs":0,"rxcorriderrs":0,
                "rxpartial":0,"rxidle":0,"req":{},"zbuf_grow":0,"buf_grow":0,"toppars":{}}},
            "topics":{}}"#;
        let statistics: Statistics = serde_json::from_str(json).expect("statistics json");
        let stats = metrics::with_local_recorder(&recorder, ProducerStats::register);
        stats.record(&statistics);
        // A replaced producer starts counting from zero again: its requests still add up.
        let replaced = metrics::with_local_recorder(&recorder, ProducerStats::register);
        replaced.record(&statistics);
        let text = handle.render() + &exposition();
        for line in [
            "# TYPE consent_enforcer_producer_queue_seconds summary",
            "consent_enforcer_producer_queue_seconds{quantile=\"0.5\"} 0.012",
            "consent_enforcer_producer_queue_seconds{quantile=\"0.99\"} 0.095",
            "consent_enforcer_producer_request_seconds{quantile=\"0.99\"} 0.006",
            "consent_enforcer_producer_requests_total 2406",
            "consent_enforcer_producer_requests_in_flight 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // Two intervals of 900 samples each, whose sums add up.
        let count: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("consent_enforcer_producer_queue_seconds_count "))
            .and_then(|v| v.parse().ok())
            .expect("a count");
        assert!(count >= 1_800.0, "{text}");
    }
}
