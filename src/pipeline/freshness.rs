//! Whether the consent table is current enough to judge events: a batch waits until the
//! table has applied every consent record acknowledged before the batch was read (its
//! end-offset sample), at most `consent.max_wait_ms` per try; past
//! `consent.max_staleness_ms` without catching up the instance is not ready and judges nothing.

use std::time::{Duration, Instant};

use super::effects::Effects;
use super::{
    set_ready, Signals, CATCH_UP_SLICE, CONSENT_RECORDS_PER_TURN, FRESHNESS_PROBE_INTERVAL,
};
use crate::config::Config;
use crate::consent::follower::PendingSample;
use crate::consent::ConsentFollower;
use crate::internal_events::{self as events, InternalEvent};
use crate::telemetry;

/// Whether the consent table is current enough to judge events.
pub(super) struct Freshness {
    pub(super) max_wait: Duration,
    pub(super) max_staleness: Duration,
    /// The sample of an idle probe, kept until reached.
    pub(super) probe: Option<PendingSample>,
    /// When the table was last known to be caught up.
    pub(super) fresh_at: Instant,
    pub(super) last_probe: Instant,
    /// Past `max_staleness`: not ready, nothing judged or committed.
    pub(super) stale: bool,
    pub(super) wait_seconds: metrics::Histogram,
    pub(super) wait_timeouts: metrics::Counter,
    /// Seconds since `fresh_at`.
    pub(super) staleness: metrics::Gauge,
}

impl Freshness {
    pub(super) fn new(config: &Config) -> Freshness {
        Freshness {
            max_wait: config.consent.max_wait().value,
            max_staleness: config.consent.max_staleness().value,
            probe: None,
            fresh_at: Instant::now(),
            last_probe: Instant::now(),
            stale: false,
            wait_seconds: metrics::histogram!(telemetry::CONSENT_WAIT_SECONDS),
            wait_timeouts: metrics::counter!(telemetry::CONSENT_WAIT_TIMEOUTS),
            staleness: metrics::gauge!(telemetry::CONSENT_STALENESS_SECONDS),
        }
    }

    pub(super) fn probe_due(&self) -> bool {
        self.last_probe.elapsed() >= FRESHNESS_PROBE_INTERVAL
    }

    /// With no events to judge: checks that the table can still catch up.
    pub(super) fn probe(
        &mut self,
        follower: &mut ConsentFollower,
        effects: &mut Effects<'_>,
    ) -> bool {
        let mut sample = self.probe.take();
        let fresh = self.catch_up(&mut sample, follower, effects);
        // A sample not reached yet is kept for the next probe.
        self.probe = if fresh { None } else { sample };
        fresh
    }

    /// Applies consent records until the table reaches the end offsets in `sample` (asked
    /// for now if there is none), for at most `consent.max_wait_ms`. True if it did. A
    /// failed sample is dropped, so the next try asks for a new one.
    pub(super) fn catch_up(
        &mut self,
        sample: &mut Option<PendingSample>,
        follower: &mut ConsentFollower,
        effects: &mut Effects<'_>,
    ) -> bool {
        self.last_probe = Instant::now();
        let started = Instant::now();
        let pending = sample.get_or_insert_with(|| follower.request_sample(self.max_wait));
        loop {
            let left = self.max_wait.saturating_sub(started.elapsed());
            let reached = match pending.wait(left) {
                Ok(Some(ends)) => follower.reached(ends),
                Ok(None) => false,
                Err(error) => {
                    events::EndOffsetsNotSampled { error: &error }.emit();
                    *sample = None;
                    return false;
                }
            };
            if reached {
                self.wait_seconds.record(started.elapsed().as_secs_f64());
                return true;
            }
            let elapsed = started.elapsed();
            if elapsed >= self.max_wait {
                self.wait_seconds.record(elapsed.as_secs_f64());
                self.wait_timeouts.increment(1);
                return false;
            }
            follower.poll(
                CATCH_UP_SLICE.min(self.max_wait - elapsed),
                CONSENT_RECORDS_PER_TURN,
                effects,
            );
            effects.delivery.poll();
        }
    }

    /// Tracks staleness and readiness after a catch-up. `hidden`: consent records have been
    /// held back behind an open transaction for `max_staleness` already (stale at once).
    pub(super) fn report(&mut self, fresh: bool, hidden: bool, signals: &Signals) {
        if fresh {
            self.fresh_at = Instant::now();
        }
        self.staleness.set(self.fresh_at.elapsed().as_secs_f64());
        if fresh {
            if self.stale {
                self.stale = false;
                set_ready(signals, true);
                tracing::info!("consent topic readable again: judging events");
            }
        } else if hidden && !self.stale {
            self.stale = true;
            set_ready(signals, false);
            events::ConsentHiddenByOpenTransaction {
                max_staleness: self.max_staleness,
            }
            .emit();
        } else if !self.stale && self.fresh_at.elapsed() >= self.max_staleness {
            self.stale = true;
            set_ready(signals, false);
            events::ConsentStale {
                max_staleness: self.max_staleness,
            }
            .emit();
        }
    }
}
