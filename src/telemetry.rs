//! Metric names and pre-registered handles.
//!
//! Every label value comes from the configuration or a fixed list, never from input, so the
//! series count is bounded. Handles are registered once at start: the hot path only bumps
//! atomics, and every series shows (as 0) from the first scrape, which makes absent traffic
//! visible rather than indistinguishable from a missing exporter.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, Counter, Gauge, Unit,
};

use crate::consent::Rejection;
use crate::decision::DropReason;
use crate::event::Malformed;

pub const EVENTS_RECEIVED: &str = "consent_enforcer_events_received_total";
pub const EVENTS_DELIVERED: &str = "consent_enforcer_events_delivered_total";
pub const EVENTS_DROPPED: &str = "consent_enforcer_events_dropped_total";
pub const EVENTS_DEAD_LETTERED: &str = "consent_enforcer_events_dead_lettered_total";
pub const CONSENT_RECORDS_RECEIVED: &str = "consent_enforcer_consent_records_received_total";
pub const CONSENT_RECORDS_APPLIED: &str = "consent_enforcer_consent_records_applied_total";
pub const CONSENT_RECORDS_REMOVED: &str = "consent_enforcer_consent_records_removed_total";
pub const CONSENT_RECORDS_REJECTED: &str = "consent_enforcer_consent_records_rejected_total";
pub const CONSENT_RECORDS_REPUBLISHED: &str = "consent_enforcer_consent_records_republished_total";
pub const CONSENT_RECORDS_REPUBLISHED_REWRITTEN: &str =
    "consent_enforcer_consent_records_republished_rewritten_total";
pub const CONSENT_RECORDS_FUTURE_DATED: &str =
    "consent_enforcer_consent_records_future_dated_total";
pub const CONSENT_STATES: &str = "consent_enforcer_consent_states";
pub const CONSENT_HISTORY_USERS: &str = "consent_enforcer_consent_history_users";
pub const CONSENT_LAG: &str = "consent_enforcer_consent_lag_records";
pub const CONSENT_BOOTSTRAP_SECONDS: &str = "consent_enforcer_consent_bootstrap_seconds";
pub const CONSENT_STALENESS_SECONDS: &str = "consent_enforcer_consent_staleness_seconds";
pub const BUILD_INFO: &str = "consent_enforcer_build_info";
pub const INPUT_LAG: &str = "consent_enforcer_input_lag_records";
pub const WRITES_IN_FLIGHT: &str = "consent_enforcer_writes_in_flight";
pub const OFFSET_COMMITS: &str = "consent_enforcer_offset_commits_total";
pub const READY: &str = "consent_enforcer_ready";
pub const ERRORS: &str = "consent_enforcer_errors_total";
pub const CONSENT_WAIT_SECONDS: &str = "consent_enforcer_consent_wait_seconds";
pub const CONSENT_WAIT_TIMEOUTS: &str = "consent_enforcer_consent_wait_timeouts_total";
pub const HEADERS_STRIPPED: &str = "consent_enforcer_input_headers_stripped_total";
pub const PRIVACY_REQUESTS_RECEIVED: &str = "consent_enforcer_privacy_requests_received_total";
pub const PRIVACY_REQUESTS_REJECTED: &str = "consent_enforcer_privacy_requests_rejected_total";
pub const SUPPRESSED_USERS: &str = "consent_enforcer_suppressed_users";
pub const CONSENT_LEARNED: &str = "consent_enforcer_consent_learned_total";
pub const PRIVACY_DELETIONS: &str = "consent_enforcer_privacy_deletions_total";
pub const AUDIT_RECORDS_WRITTEN: &str = "consent_enforcer_audit_records_written_total";
pub const AUDIT_WRITE_FAILURES: &str = "consent_enforcer_audit_write_failures_total";
pub const AUDIT_PENDING: &str = "consent_enforcer_audit_pending_changes";
pub const UNKNOWN_CONSENT_NAMES: &str = "consent_enforcer_unknown_consent_names_total";
pub const HELD: &str = "consent_enforcer_held_events_total";
/// `HELD`'s name before the held-event metrics shared one word order; still exported.
pub const HELD_DEPRECATED: &str = "consent_enforcer_events_held_total";
pub const HELD_RELEASED: &str = "consent_enforcer_held_events_released_total";
pub const HELD_EXPIRED: &str = "consent_enforcer_held_events_expired_total";
pub const HELD_OVER_CAP: &str = "consent_enforcer_held_events_over_cap_total";
pub const HELD_NOW: &str = "consent_enforcer_held_events";
pub const HELD_BYTES: &str = "consent_enforcer_held_bytes";
pub const TRANSACTIONS: &str = "consent_enforcer_transactions_total";
pub const TRANSACTION_COMMIT_SECONDS: &str = "consent_enforcer_transaction_commit_seconds";
pub const PRODUCER_QUEUE_SECONDS: &str = "consent_enforcer_producer_queue_seconds";
pub const PRODUCER_REQUEST_SECONDS: &str = "consent_enforcer_producer_request_seconds";
pub const PRODUCER_REQUESTS: &str = "consent_enforcer_producer_requests_total";
pub const PRODUCER_REQUESTS_IN_FLIGHT: &str = "consent_enforcer_producer_requests_in_flight";

/// Histogram buckets (seconds) for waits that are usually sub-millisecond.
pub const WAIT_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Registers the description of every metric (shown as `# HELP` lines).
pub fn describe() {
    describe_counter!(
        EVENTS_RECEIVED,
        Unit::Count,
        "Events read from the input topics."
    );
    describe_counter!(
        EVENTS_DELIVERED,
        Unit::Count,
        "Events written to a destination topic and acknowledged by the broker."
    );
    describe_counter!(
        EVENTS_DROPPED,
        Unit::Count,
        "Events not sent to a destination, by reason (integrations, no_consent, denied)."
    );
    describe_counter!(
        EVENTS_DEAD_LETTERED,
        Unit::Count,
        "Malformed events written to the dead-letter topic and acknowledged, by reason."
    );
    describe_counter!(
        CONSENT_RECORDS_RECEIVED,
        Unit::Count,
        "Records read from the consent topic."
    );
    describe_counter!(
        CONSENT_RECORDS_APPLIED,
        Unit::Count,
        "Consent states stored in the table."
    );
    describe_counter!(
        CONSENT_RECORDS_REMOVED,
        Unit::Count,
        "Tombstones applied to the table."
    );
    describe_counter!(
        CONSENT_RECORDS_REJECTED,
        Unit::Count,
        "Consent records not applied, by reason; malformed ones leave the user with nothing granted."
    );
    describe_counter!(
        CONSENT_RECORDS_REPUBLISHED,
        Unit::Count,
        "Newer states re-published after a stale record, so compaction cannot resurrect it."
    );
    describe_counter!(
        CONSENT_RECORDS_REPUBLISHED_REWRITTEN,
        Unit::Count,
        "Re-published states written from the table because the newer record could not be read back: its fields the enforcer does not read are not carried."
    );
    describe_counter!(
        CONSENT_RECORDS_FUTURE_DATED,
        Unit::Count,
        "Consent records whose updatedAt was later than their Kafka timestamp, applied as of the timestamp."
    );
    describe_gauge!(CONSENT_STATES, Unit::Count, "Users in the consent table.");
    describe_counter!(
        PRIVACY_REQUESTS_RECEIVED,
        Unit::Count,
        "Records read from the privacy-requests topic."
    );
    describe_counter!(
        PRIVACY_REQUESTS_REJECTED,
        Unit::Count,
        "Privacy requests not understood, by reason; each leaves its identifier suppressed until a valid request replaces it."
    );
    describe_counter!(
        CONSENT_LEARNED,
        Unit::Count,
        "Consent states learned from CMP preference events and written to the consent topic (acknowledged)."
    );
    describe_counter!(
        PRIVACY_DELETIONS,
        Unit::Count,
        "Delete requests carried out by this instance: deletion records and a consent tombstone written, then the request marked done."
    );
    describe_gauge!(
        SUPPRESSED_USERS,
        Unit::Count,
        "Identifiers whose events reach no destination (privacy requests)."
    );
    describe_counter!(
        AUDIT_RECORDS_WRITTEN,
        Unit::Count,
        "Audit records written ([audit] topic): changes this instance applied to its consent and privacy view, acknowledged (committed, in exactly-once mode)."
    );
    describe_counter!(
        AUDIT_WRITE_FAILURES,
        Unit::Count,
        "Audit log batches that could not be written or committed, and were tried again."
    );
    describe_gauge!(
        AUDIT_PENDING,
        Unit::Count,
        "Changes applied and not yet written to the audit log."
    );
    describe_counter!(
        UNKNOWN_CONSENT_NAMES,
        Unit::Count,
        "Names in consent preferences or consent-ID lists that are neither a category a destination needs nor a [consent.aliases] entry, ignored; by where they were read (state, event)."
    );
    describe_counter!(
        HEADERS_STRIPPED,
        Unit::Count,
        "Input event headers named consent-enforcer-*, the enforcer's own prefix, not copied to anything it writes."
    );
    describe_gauge!(
        CONSENT_HISTORY_USERS,
        Unit::Count,
        "Users with superseded consent states kept to judge late events."
    );
    describe_gauge!(
        CONSENT_LAG,
        Unit::Count,
        "Consent records written but not yet applied to the table."
    );
    describe_gauge!(
        CONSENT_BOOTSTRAP_SECONDS,
        Unit::Seconds,
        "Time taken to read the consent topic to its end at start."
    );
    describe_gauge!(
        INPUT_LAG,
        Unit::Count,
        "Input records not yet read, by topic."
    );
    describe_gauge!(
        WRITES_IN_FLIGHT,
        Unit::Count,
        "Destination and dead-letter writes sent but not yet acknowledged."
    );
    describe_counter!(
        OFFSET_COMMITS,
        Unit::Count,
        "Input offset commits, by result."
    );
    describe_gauge!(
        READY,
        Unit::Count,
        "1 once the consent table is loaded and events are judged."
    );
    describe_counter!(ERRORS, Unit::Count, "Errors, by stage and error_type.");
    describe_gauge!(
        CONSENT_STALENESS_SECONDS,
        Unit::Seconds,
        "Seconds since the consent table (and the privacy topic, with [privacy]) last caught up with an end-offset sample; past consent.max_staleness nothing is judged."
    );
    describe_gauge!(
        BUILD_INFO,
        "1, labelled with the running build's version and git revision."
    );
    describe_histogram!(
        CONSENT_WAIT_SECONDS,
        Unit::Seconds,
        "Time a batch of events waited for the consent table to catch up with the consent topic."
    );
    describe_counter!(
        HELD,
        Unit::Count,
        "Events written to the hold topic to wait for the user's first choice."
    );
    describe_counter!(
        HELD_DEPRECATED,
        Unit::Count,
        "Deprecated: consent_enforcer_held_events_total under its earlier name."
    );
    describe_counter!(
        HELD_RELEASED,
        Unit::Count,
        "Held events judged after the user's first choice arrived."
    );
    describe_counter!(
        HELD_EXPIRED,
        Unit::Count,
        "Held events dropped because no choice came within hold.max_age."
    );
    describe_counter!(
        HELD_OVER_CAP,
        Unit::Count,
        "Held events dropped at once (as hold_expired) because their identifier already had the most events allowed waiting."
    );
    describe_gauge!(
        HELD_NOW,
        Unit::Count,
        "Held events waiting in this instance's memory."
    );
    describe_gauge!(
        HELD_BYTES,
        Unit::Bytes,
        "Memory taken by held events waiting."
    );
    describe_counter!(
        TRANSACTIONS,
        Unit::Count,
        "Exactly-once transactions, by result (committed, aborted)."
    );
    describe_histogram!(
        TRANSACTION_COMMIT_SECONDS,
        Unit::Seconds,
        "Time to commit one transaction (flush, offsets, commit)."
    );
    describe_counter!(
        PRODUCER_REQUESTS,
        Unit::Count,
        "Requests the producer sent to brokers."
    );
    describe_gauge!(
        PRODUCER_REQUESTS_IN_FLIGHT,
        Unit::Count,
        "Producer requests awaiting a response when statistics were last taken; at 5 (the idempotent producer's limit per broker) writes queue for a request."
    );
    describe_counter!(
        CONSENT_WAIT_TIMEOUTS,
        Unit::Count,
        "Waits for the consent table that reached consent.max_wait; the events wait on."
    );
}

/// Every `stage`/`error_type` pair [`error`] is called with: each series is registered at
/// start, so a dashboard or alert reads 0 rather than nothing.
pub const ERROR_KINDS: &[(&str, &str)] = &[
    ("commit", "async"),
    ("commit", "rejected"),
    ("commit", "revoke"),
    ("commit", "shutdown"),
    ("consent", "consume"),
    ("consent", "follow"),
    ("consent", "hidden_by_open_transaction"),
    ("consent", "partitions_changed"),
    ("consent", "revocation_drain_timeout"),
    ("consent", "sample_end_offsets"),
    ("consent", "stale"),
    ("consume", "close_timeout"),
    ("consume", "pause"),
    ("consume", "poll"),
    ("consume", "rebalance"),
    ("consume", "resume"),
    ("consume", "seek"),
    ("consume", "untrackable_partition"),
    ("delivery", "producer_renewed"),
    ("delivery", "revoke_drain"),
    ("delivery", "transaction_fatal"),
    ("delivery", "write_failed"),
    ("delivery", "write_failed_in_transaction"),
    ("hold", "pause"),
    ("http", "accept"),
];

/// Registers the series whose labels are known before anything happens: errors, offset
/// commits and transactions by result.
pub fn register_known_series() {
    gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "revision" => option_env!("CONSENT_ENFORCER_REVISION").unwrap_or("unknown")
    )
    .set(1.0);
    gauge!(CONSENT_STALENESS_SECONDS).set(0.0);
    for (stage, error_type) in ERROR_KINDS {
        counter!(ERRORS, "stage" => *stage, "error_type" => *error_type).absolute(0);
    }
    for result in ["ok", "error"] {
        counter!(OFFSET_COMMITS, "result" => result).absolute(0);
    }
    for result in ["committed", "aborted"] {
        counter!(TRANSACTIONS, "result" => result).absolute(0);
    }
}

/// Counts an error; `stage` and `error_type` are fixed strings listed in [`ERROR_KINDS`].
pub fn error(stage: &'static str, error_type: &'static str) {
    debug_assert!(
        ERROR_KINDS.contains(&(stage, error_type)),
        "{stage}/{error_type} missing from ERROR_KINDS"
    );
    counter!(ERRORS, "stage" => stage, "error_type" => error_type).increment(1);
}

/// Handles for the event path.
pub struct EventMetrics {
    pub received: Counter,
    /// Per destination, in config order.
    pub delivered: Vec<Counter>,
    /// Per destination, then per [`DropReason::ALL`].
    pub dropped: Vec<[Counter; 6]>,
    /// Per [`Malformed::ALL`].
    pub dead_lettered: [Counter; 7],
    pub in_flight: Gauge,
    /// Events written to the hold topic, under the name and the deprecated one.
    pub held: [Counter; 2],
    /// Input headers of reserved names, not written on.
    pub headers_stripped: Counter,
    pub unknown_names: Counter,
    pub learned: Counter,
}

impl EventMetrics {
    pub fn register<'a>(destinations: impl IntoIterator<Item = &'a str>) -> EventMetrics {
        let mut delivered = Vec::new();
        let mut dropped = Vec::new();
        for name in destinations {
            let name = name.to_owned();
            delivered.push(counter!(EVENTS_DELIVERED, "destination" => name.clone()));
            dropped.push(DropReason::ALL.map(|reason| {
                counter!(EVENTS_DROPPED, "destination" => name.clone(), "reason" => reason.as_str())
            }));
        }
        EventMetrics {
            received: counter!(EVENTS_RECEIVED),
            delivered,
            dropped,
            dead_lettered: Malformed::ALL
                .map(|reason| counter!(EVENTS_DEAD_LETTERED, "reason" => reason.as_str())),
            in_flight: gauge!(WRITES_IN_FLIGHT),
            held: [counter!(HELD), counter!(HELD_DEPRECATED)],
            headers_stripped: counter!(HEADERS_STRIPPED),
            unknown_names: counter!(UNKNOWN_CONSENT_NAMES, "source" => "event"),
            learned: counter!(CONSENT_LEARNED),
        }
    }

    pub fn dropped(&self, destination: usize, reason: DropReason) {
        let index = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.dropped[destination][index].increment(1);
    }

    pub fn dead_lettered(&self, reason: Malformed) {
        self.dead_lettered_by(reason, 1);
    }

    pub fn dead_lettered_by(&self, reason: Malformed, count: u64) {
        let index = Malformed::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.dead_lettered[index].increment(count);
    }
}

/// Handles for the consent path.
pub struct ConsentMetrics {
    pub received: Counter,
    pub applied: Counter,
    pub removed: Counter,
    /// Per [`Rejection::ALL`].
    pub rejected: [Counter; 9],
    pub republished: Counter,
    pub future_dated: Counter,
    pub states: Gauge,
    pub history_users: Gauge,
    pub lag: Gauge,
    pub unknown_names: Counter,
}

impl ConsentMetrics {
    pub fn register() -> ConsentMetrics {
        ConsentMetrics {
            received: counter!(CONSENT_RECORDS_RECEIVED),
            applied: counter!(CONSENT_RECORDS_APPLIED),
            removed: counter!(CONSENT_RECORDS_REMOVED),
            rejected: Rejection::ALL
                .map(|reason| counter!(CONSENT_RECORDS_REJECTED, "reason" => reason.as_str())),
            republished: counter!(CONSENT_RECORDS_REPUBLISHED),
            future_dated: counter!(CONSENT_RECORDS_FUTURE_DATED),
            states: gauge!(CONSENT_STATES),
            history_users: gauge!(CONSENT_HISTORY_USERS),
            lag: gauge!(CONSENT_LAG),
            unknown_names: counter!(UNKNOWN_CONSENT_NAMES, "source" => "state"),
        }
    }

    pub fn rejected(&self, reason: Rejection) {
        let index = Rejection::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.rejected[index].increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::ERROR_KINDS;

    /// Every error the sources count is listed, so that it is registered at start.
    #[test]
    fn every_error_counted_in_the_sources_is_registered_at_start() {
        let mut files = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        let mut seen = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read src") {
                    files.push(entry.expect("entry").path());
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for call in text.split("telemetry::error(\"").skip(1) {
                let mut parts = call.split('"');
                let stage = parts.next().unwrap_or_default();
                let error_type = parts.nth(1).unwrap_or_default();
                seen += 1;
                assert!(
                    ERROR_KINDS.contains(&(stage, error_type)),
                    "{}: {stage}/{error_type} missing from ERROR_KINDS",
                    path.display()
                );
            }
        }
        assert!(seen > 10, "found {seen} calls");
    }
}
