//! One turn of the loop, the data path in order: read events, follow the consent partitions
//! they need, apply consent records, wait for the table to be fresh, judge, serve the hold,
//! settle acknowledgements, commit.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use super::batch::Batch;
use super::effects::Effects;
use super::freshness::Freshness;
use super::hold::Hold;
use super::input_pause::InputPause;
use super::judge::Judge;
use super::read_again::after_rewind;
use super::rebalance::EventConsumerContext;
use super::serve_hold::serve_hold;
use super::{Signals, CONSENT_RECORDS_PER_TURN, FRESHNESS_PROBE_INTERVAL};
use crate::clock::now_ms;
use crate::consent::ConsentFollower;
use crate::delivery::commits::Commits;
use crate::delivery::exactly_once::Rewound;
use crate::delivery::Delivery;
use crate::internal_events::{self as events, InternalEvent};

/// How long an idle loop waits for an event.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// The loop's state between turns.
pub(super) struct Running<'a, 'c> {
    pub(super) consumer: &'c BaseConsumer<EventConsumerContext>,
    pub(super) delivery: &'a Delivery,
    pub(super) follower: &'a mut ConsentFollower,
    pub(super) effects: Effects<'a>,
    pub(super) judge: Judge<'a>,
    pub(super) hold: Option<&'a RefCell<Hold>>,
    pub(super) hold_topic: Option<&'a str>,
    pub(super) signals: &'a Signals,
    pub(super) drain_timeout: Duration,
    /// Co-partitioned mode: the consent partitions followed change with the assignment.
    pub(super) copartitioned: bool,
    pub(super) freshness: Freshness,
    pub(super) commits: Commits<'c>,
    /// Events read but not yet judged wait until the table has caught up with the consent
    /// topic as it was after they were read. While one batch waits for (or is judged with)
    /// its end-offset sample, the next is read and its sample requested, so that at full
    /// load the sample's round trip overlaps with judging instead of adding to it.
    pub(super) current: Option<Batch<'c>>,
    pub(super) ahead: Option<Batch<'c>>,
    pub(super) input_pause: InputPause,
    /// The assignment version the followed consent partitions were chosen for.
    pub(super) followed_version: u64,
    pub(super) last_expiry_scan: Instant,
}

impl<'c> Running<'_, 'c> {
    /// One turn. An error if the consent partitions of this instance's input partitions
    /// cannot be followed (the service stops).
    pub(super) fn turn(&mut self) -> Result<(), KafkaError> {
        self.read();
        self.follow()?;
        // After `follow`, so that a sample covers the consent partitions of its batch's input
        // partitions. At full load `current` already has its sample (asked for when it was
        // read ahead, a turn ago) and only `ahead` asks now.
        for batch in [&mut self.current, &mut self.ahead].into_iter().flatten() {
            if batch.sample.is_none() {
                batch.sample = Some(self.follower.request_sample(self.freshness.max_wait));
            }
        }
        self.follower
            .poll(Duration::ZERO, CONSENT_RECORDS_PER_TURN, &mut self.effects);
        if (self.current.is_some() || self.freshness.probe_due()) && self.catch_up() {
            self.judge_current();
            self.serve_hold();
        }
        self.delivery.poll();
        let rewound = self
            .commits
            .tick(self.delivery, self.consumer, self.freshness.stale);
        self.read_again(rewound);
        Ok(())
    }

    /// Takes the batch read ahead, or reads one (only an idle loop waits for events), and
    /// reads the next ahead.
    fn read(&mut self) {
        if self.current.is_none() {
            self.current = self.ahead.take();
        }
        if self.current.is_none() {
            self.current = Batch::read(self.consumer, self.delivery, IDLE_WAIT);
        }
        if self.current.is_some() && self.ahead.is_none() {
            self.ahead = Batch::read(self.consumer, self.delivery, Duration::ZERO);
        }
    }

    /// Co-partitioned mode: follows the consent partitions of the input partitions owned.
    fn follow(&mut self) -> Result<(), KafkaError> {
        if !self.copartitioned {
            return Ok(());
        }
        let version = self.delivery.inputs().version();
        if version != self.followed_version {
            let partitions = self.delivery.inputs().partition_numbers();
            if let Err(error) = self.follower.follow(&partitions) {
                events::ConsentPartitionsNotFollowed { error: &error }.emit();
                return Err(error);
            }
            self.followed_version = version;
        }
        Ok(())
    }

    /// Waits (bounded) for the table to catch up with the current batch's sample, or probes
    /// an idle table. True if the table is fresh: events may be judged.
    fn catch_up(&mut self) -> bool {
        // Caught up with the stable offsets, but acknowledged records may sit above them
        // behind a transaction left open: then the table is not current either. Asked
        // before catching up: once they stop being hidden, catching up waits for them.
        let hidden = self.follower.hidden_for() >= self.freshness.max_staleness;
        let caught_up = match &mut self.current {
            Some(batch) => {
                self.freshness
                    .catch_up(&mut batch.sample, self.follower, &mut self.effects)
            }
            None => self.freshness.probe(self.follower, &mut self.effects),
        };
        let fresh = caught_up && !hidden;
        self.freshness.report(fresh, hidden, self.signals);
        if let (false, Some(waiting)) = (fresh, self.ahead.as_mut()) {
            self.input_pause
                .serve(self.consumer, self.delivery, waiting);
        }
        self.read_again(Rewound::new());
        if fresh {
            let hold_full = self.hold.is_some_and(|h| h.borrow().full());
            self.input_pause.resume(
                self.consumer,
                hold_full.then_some(self.hold_topic).flatten(),
            );
        }
        fresh
    }

    /// Judges every event of the current batch with the table as it is now.
    fn judge_current(&mut self) {
        let Some(batch) = self.current.take() else {
            return;
        };
        let now = now_ms();
        for (index, message) in batch.events.iter().enumerate() {
            let mut held = self.hold.map(RefCell::borrow_mut);
            let table = self.follower.table_for(message.partition());
            self.judge.event(
                table,
                message,
                batch.assignments_before(index),
                now,
                held.as_deref_mut(),
            );
        }
    }

    fn serve_hold(&mut self) {
        if let Some(hold) = self.hold {
            let scan = self.last_expiry_scan.elapsed() >= FRESHNESS_PROBE_INTERVAL;
            if scan {
                self.last_expiry_scan = Instant::now();
            }
            serve_hold(
                &self.judge,
                self.follower,
                hold,
                self.consumer,
                scan,
                self.freshness.max_wait,
            );
        }
    }

    /// After an aborted transaction: the events read but not judged are read again. The
    /// abort may have come from the loop's own commit (`rewound`), before a consent revocation
    /// (kept by the effects) or in a revocation of input partitions (kept by the consumer's
    /// context).
    fn read_again(&mut self, mut rewound: Rewound) {
        rewound.append(&mut self.effects.rewound);
        rewound.append(&mut self.consumer.context().take_rewound());
        after_rewind(
            self.delivery,
            self.consumer,
            [&mut self.current, &mut self.ahead],
            self.hold,
            self.drain_timeout,
            rewound,
        );
    }
}
