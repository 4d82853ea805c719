//! Whether the consent table is current enough to judge events: each batch waits until the
//! table has applied every consent record that was in the topic after the batch was read.

use std::time::{Duration, Instant};

use super::{set_ready, Effects, Signals, CONSENT_RECORDS_PER_TURN};
use crate::config::Config;
use crate::consent::follower::PendingSample;
use crate::consent::ConsentFollower;
use crate::telemetry;

/// How often an idle enforcer checks that it can still read the consent topic.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one wait for a sample's answer or for consent records lasts before the loop
/// turns again (to read events, serve acknowledgements and commit).
const WAIT_SLICE: Duration = Duration::from_millis(5);

/// One batch's (or one probe's) wait for the table to reach an end-offset sample.
pub struct SampleWait {
    /// `None` after a failed sample: the next check asks for a new one.
    sample: Option<PendingSample>,
    /// When the current try began; a try lasts at most `consent.max_wait_ms`.
    since: Instant,
}

impl SampleWait {
    /// Whether the sample's answer is in (then what is left is applying records up to it).
    pub fn answered(&mut self) -> bool {
        self.sample
            .as_mut()
            .is_some_and(|sample| matches!(sample.wait(Duration::ZERO), Ok(Some(_))))
    }
}

/// How a wait stands after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Every record before the sample is applied: judge.
    Reached,
    /// Not yet; the try has time left.
    Waiting,
    /// The try ran out of `consent.max_wait_ms`, or the sample failed: a new try begins.
    Missed,
}

pub struct Freshness {
    max_wait: Duration,
    max_staleness: Duration,
    /// The idle probe's wait, kept until reached.
    probe: Option<SampleWait>,
    /// When the table was last known to be caught up.
    fresh_at: Instant,
    last_probe: Instant,
    /// Past `max_staleness`: not ready, nothing judged or committed.
    pub stale: bool,
    wait_seconds: metrics::Histogram,
    wait_timeouts: metrics::Counter,
}

impl Freshness {
    pub fn new(config: &Config) -> Freshness {
        Freshness {
            max_wait: Duration::from_millis(config.consent.max_wait_ms),
            max_staleness: Duration::from_millis(config.consent.max_staleness_ms),
            probe: None,
            fresh_at: Instant::now(),
            last_probe: Instant::now(),
            stale: false,
            wait_seconds: metrics::histogram!(telemetry::CONSENT_WAIT_SECONDS),
            wait_timeouts: metrics::counter!(telemetry::CONSENT_WAIT_TIMEOUTS),
        }
    }

    /// Asks for the end offsets as they are from now on, for events just read.
    pub fn ask(&self, follower: &ConsentFollower) -> SampleWait {
        SampleWait {
            sample: Some(follower.request_sample(self.max_wait)),
            since: Instant::now(),
        }
    }

    pub fn probe_due(&self) -> bool {
        self.last_probe.elapsed() >= PROBE_INTERVAL
    }

    /// Without blocking: whether the table has reached `wait`'s sample.
    pub fn check(&mut self, wait: &mut SampleWait, follower: &mut ConsentFollower) -> CatchUp {
        self.last_probe = Instant::now();
        let Some(sample) = &mut wait.sample else {
            *wait = self.ask(follower);
            return CatchUp::Waiting;
        };
        let reached = match sample.wait(Duration::ZERO) {
            Ok(Some(ends)) => follower.reached(ends),
            Ok(None) => false,
            Err(error) => {
                telemetry::error("consent", "sample_end_offsets");
                tracing::debug!(%error, "cannot sample the consent topic's end offsets");
                wait.sample = None;
                return CatchUp::Missed;
            }
        };
        let waited = wait.since.elapsed();
        if reached {
            self.wait_seconds.record(waited.as_secs_f64());
            return CatchUp::Reached;
        }
        if waited >= self.max_wait {
            self.wait_seconds.record(waited.as_secs_f64());
            self.wait_timeouts.increment(1);
            wait.since = Instant::now();
            return CatchUp::Missed;
        }
        CatchUp::Waiting
    }

    /// Blocks for a slice on what `wait` lacks: the sample's answer, or consent records up to
    /// it. Returns early once the answer is in or records arrive.
    pub fn wait_a_slice(
        &self,
        wait: &mut SampleWait,
        follower: &mut ConsentFollower,
        effects: &mut Effects<'_>,
    ) {
        let slice = WAIT_SLICE.min(self.max_wait.saturating_sub(wait.since.elapsed()));
        let answered = match &mut wait.sample {
            Some(sample) => matches!(sample.wait(slice), Ok(Some(_))),
            None => return,
        };
        if answered {
            follower.poll(slice, CONSENT_RECORDS_PER_TURN, effects);
        }
    }

    /// With no events to judge: checks, for at most `consent.max_wait_ms`, that the table can
    /// still catch up.
    pub fn probe(&mut self, follower: &mut ConsentFollower, effects: &mut Effects<'_>) -> bool {
        let mut wait = self.probe.take().unwrap_or_else(|| self.ask(follower));
        loop {
            match self.check(&mut wait, follower) {
                CatchUp::Reached => return true,
                CatchUp::Missed => {
                    // A sample not reached yet is kept for the next probe.
                    self.probe = Some(wait);
                    return false;
                }
                CatchUp::Waiting => {
                    self.wait_a_slice(&mut wait, follower, effects);
                    effects.delivery.poll();
                }
            }
        }
    }

    /// Tracks staleness and readiness after a check that reached or missed.
    pub fn report(&mut self, fresh: bool, signals: &Signals) {
        if fresh {
            self.fresh_at = Instant::now();
            if self.stale {
                self.stale = false;
                set_ready(signals, true);
                tracing::info!("consent topic readable again: judging events");
            }
        } else if !self.stale && self.fresh_at.elapsed() >= self.max_staleness {
            self.stale = true;
            set_ready(signals, false);
            telemetry::error("consent", "stale");
            tracing::error!(
                max_staleness_ms = self.max_staleness.as_millis() as u64,
                "cannot catch up with the consent topic: not judging events until it can"
            );
        }
    }
}
