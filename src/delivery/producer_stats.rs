//! The producer's own latency, from librdkafka's statistics.
//!
//! librdkafka sends one partition's batch per produce request and, with idempotence, keeps
//! at most five requests in flight per broker, which handles them one at a time. With many
//! destination partitions on one broker the producer is bound by that window: each partition
//! waits its turn (about partitions / 5 round trips), and every millisecond the broker adds
//! to a request is multiplied. These gauges show it: requests in flight pinned at 5 and the
//! queue time far above `linger.ms`.

use metrics::{counter, gauge, Counter, Gauge};
use rdkafka::statistics::Window;
use rdkafka::Statistics;

use crate::telemetry::{
    PRODUCER_QUEUE_SECONDS, PRODUCER_REQUESTS, PRODUCER_REQUESTS_IN_FLIGHT,
    PRODUCER_REQUEST_SECONDS,
};

pub struct ProducerStats {
    queue_p50: Gauge,
    queue_p99: Gauge,
    request_p50: Gauge,
    request_p99: Gauge,
    requests: Counter,
    in_flight: Gauge,
}

impl ProducerStats {
    pub fn register() -> ProducerStats {
        ProducerStats {
            queue_p50: gauge!(PRODUCER_QUEUE_SECONDS, "quantile" => "0.5"),
            queue_p99: gauge!(PRODUCER_QUEUE_SECONDS, "quantile" => "0.99"),
            request_p50: gauge!(PRODUCER_REQUEST_SECONDS, "quantile" => "0.5"),
            request_p99: gauge!(PRODUCER_REQUEST_SECONDS, "quantile" => "0.99"),
            requests: counter!(PRODUCER_REQUESTS),
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
        }
        self.queue_p50.set(micros(summary.queue.p50));
        self.queue_p99.set(micros(summary.queue.p99));
        self.request_p50.set(micros(summary.request.p50));
        self.request_p99.set(micros(summary.request.p99));
        self.requests.absolute(summary.requests);
        self.in_flight.set(summary.in_flight as f64);
    }
}

#[derive(Default)]
struct Summary {
    requests: u64,
    in_flight: i64,
    queue: Quantiles,
    request: Quantiles,
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
                "int_latency":{"min":0,"max":0,"avg":0,"sum":0,"cnt":900,"stddev":0,
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
        metrics::with_local_recorder(&recorder, || ProducerStats::register().record(&statistics));
        let text = handle.render();
        for line in [
            "consent_enforcer_producer_queue_seconds{quantile=\"0.5\"} 0.012",
            "consent_enforcer_producer_queue_seconds{quantile=\"0.99\"} 0.095",
            "consent_enforcer_producer_request_seconds{quantile=\"0.99\"} 0.006",
            "consent_enforcer_producer_requests_total 1203",
            "consent_enforcer_producer_requests_in_flight 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
