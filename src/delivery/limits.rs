//! How large a record the dead-letter topic accepts, read from the cluster at start.
//!
//! A write larger than the producer's `message.max.bytes` or the topic's `max.message.bytes`
//! fails for good, and a write that fails for good stops the service without committing past
//! its event: after a restart it would fail again on the same event, and the partition would
//! be wedged. A dead letter (typically of a `too_large` event) that does not fit goes out
//! without the original value and headers, saying how large the value was and where it is.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::message::BorrowedHeaders;

use crate::config::Config;

/// librdkafka's default `message.max.bytes`.
const PRODUCER_DEFAULT_MAX_BYTES: usize = 1_000_000;
/// Room for the record's framing in a batch and the headers the enforcer adds, beyond the
/// key, value and headers counted.
pub const RECORD_OVERHEAD_BYTES: usize = 512;

/// Header of a dead letter whose value was left out: the value's size in bytes.
pub const ORIGINAL_SIZE_HEADER: &str = "consent-enforcer-original-size";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// The largest record the dead-letter topic accepts.
    pub dead_letter: usize,
}

impl WriteLimits {
    /// Limits as the producer alone allows (topics not asked).
    pub fn of_producer(config: &Config) -> WriteLimits {
        WriteLimits {
            dead_letter: producer_max_bytes(config),
        }
    }

    /// Asks the cluster for the dead-letter topic's `max.message.bytes`. If it cannot be read,
    /// the producer's limit stands alone (a write too large for the topic then fails and is
    /// reported as any failed write).
    pub fn read(
        config: &Config,
        admin: &AdminClient<crate::kafka::KafkaContext>,
        timeout: Duration,
    ) -> WriteLimits {
        let producer = producer_max_bytes(config);
        let topic = match topic_limit(admin, &config.dead_letter.topic, timeout) {
            Ok(limit) => limit,
            Err(error) => {
                tracing::warn!(%error, "cannot read the dead-letter topic's max.message.bytes; using the producer's message.max.bytes alone");
                None
            }
        };
        WriteLimits {
            dead_letter: topic.map_or(producer, |limit| limit.min(producer)),
        }
    }
}

/// The `message.max.bytes` the enforcer's producer is created with.
fn producer_max_bytes(config: &Config) -> usize {
    crate::kafka::producer_config(config)
        .get("message.max.bytes")
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(PRODUCER_DEFAULT_MAX_BYTES)
}

/// The topic's `max.message.bytes`, if it says.
fn topic_limit(
    admin: &AdminClient<crate::kafka::KafkaContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let mut results = runtime
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options))
        .map_err(|error| error.to_string())?;
    let resource = match results.pop() {
        Some(Ok(resource)) => resource,
        Some(Err(error)) => return Err(format!("{error:?}")),
        None => return Ok(None),
    };
    Ok(resource
        .get("max.message.bytes")
        .and_then(|entry| entry.value.as_deref())
        .and_then(|value| value.parse().ok()))
}

/// An upper bound on the bytes a record with this key, value and headers takes in a batch,
/// including the headers the enforcer adds.
pub fn record_bytes(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: Option<&BorrowedHeaders>,
) -> usize {
    let headers: usize = headers.map_or(0, |headers| {
        super::headers::raw(headers)
            .map(|h| h.name.len() + h.value.map_or(0, <[u8]>::len) + 10)
            .sum()
    });
    key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + headers + RECORD_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producers_limit_is_the_one_the_producer_is_created_with() {
        let text = |extra: &str| {
            format!(
                "[kafka]\nbootstrap_servers = \"x:1\"\n{extra}\n[input]\ntopics = [\"i\"]\n[consent]\ntopic = \"c\"\n[dead_letter]\ntopic = \"d\"\n[[destination]]\nname = \"a\"\ntopic = \"t\"\ncategories = []\n"
            )
        };
        let config = |extra: &str| Config::parse(&text(extra), "test").unwrap();
        // The enforcer's own setting: room for the largest event plus 1 MiB.
        assert_eq!(WriteLimits::of_producer(&config("")).dead_letter, 2_048_576);
        let set = config("[kafka.producer_properties]\n\"message.max.bytes\" = \"2000000\"");
        assert_eq!(WriteLimits::of_producer(&set).dead_letter, 2_000_000);
    }

    #[test]
    fn record_bytes_count_key_value_headers_and_overhead() {
        assert_eq!(
            record_bytes(Some(b"key"), Some(b"value"), None),
            3 + 5 + RECORD_OVERHEAD_BYTES
        );
        assert_eq!(record_bytes(None, None, None), RECORD_OVERHEAD_BYTES);
    }
}
