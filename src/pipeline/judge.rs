//! Judges one event against every destination and sends it where it may go.

use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::BaseRecord;

use crate::config::WhenMissing;
use crate::consent::table::StateAt;
use crate::consent::{ConsentState, ConsentTable};
use crate::decision::{decide, event_time_ms, person_state, Grants, Rule};
use crate::delivery::tag::{Tag, Target};
use crate::delivery::{self, dead_letter, Delivery};
use crate::event::{self, EventView};
use crate::telemetry;
use crate::vocabulary::Vocabulary;

pub struct Judge<'a> {
    pub delivery: &'a Delivery,
    pub vocabulary: &'a Vocabulary,
    pub rules: &'a [Rule],
    pub destination_topics: Vec<&'a str>,
    pub dead_letter_topic: &'a str,
    pub when_missing: WhenMissing,
    pub max_event_bytes: usize,
    /// `consent.history_window`: how far before its record time an event's own timestamp is
    /// believed.
    pub timestamp_tolerance_ms: i64,
}

impl Judge<'_> {
    pub fn event(&self, table: &ConsentTable, message: &BorrowedMessage<'_>, now_ms: i64) {
        let metrics = self.delivery.metrics();
        let Some(input) = self
            .delivery
            .input_partition(message.topic(), message.partition())
        else {
            // Not trackable (a partition number past 65535): never commit past it.
            telemetry::error("consume", "untrackable_partition");
            tracing::error!(
                topic = message.topic(),
                partition = message.partition(),
                "cannot track this partition"
            );
            return;
        };
        if !self.delivery.is_assigned(input) {
            // Read before its partition was revoked: the next owner judges it.
            return;
        }
        metrics.received.increment(1);
        let seq = self.delivery.begin(input, message.offset());
        let tag = |target| Tag { target, input, seq }.encode();
        let record = |topic, tag| BaseRecord::<[u8], [u8], usize> {
            topic,
            partition: None,
            payload: message.payload(),
            key: message.key(),
            timestamp: message.timestamp().to_millis(),
            headers: None,
            delivery_opaque: tag,
        };
        match event::parse(message.payload(), self.max_event_bytes, self.vocabulary) {
            Err(reason) => {
                let mut dead_letter =
                    record(self.dead_letter_topic, tag(Target::DeadLetter(reason)));
                dead_letter.headers = Some(dead_letter::headers(
                    message.headers(),
                    reason,
                    message.topic(),
                    message.partition(),
                    message.offset(),
                ));
                let _ = self.delivery.send(dead_letter);
            }
            Ok(view) => {
                let time = event_time_ms(
                    view.timestamp_ms,
                    message.timestamp().to_millis(),
                    now_ms,
                    self.timestamp_tolerance_ms,
                );
                let verdicts = Verdicts::new(table, &view, time);
                for (i, rule) in self.rules.iter().enumerate() {
                    match verdicts.decide(&view, rule, self.when_missing) {
                        Ok(()) => {
                            let mut write = record(
                                self.destination_topics[i],
                                tag(Target::Destination(i as u8)),
                            );
                            write.headers = delivery::copy_headers(message.headers());
                            if self.delivery.send(write).is_err() {
                                break;
                            }
                        }
                        Err(reason) => metrics.dropped(i, reason),
                    }
                }
            }
        }
        self.delivery.end(input);
    }
}

/// The consent sources of one event now and at its own time. An event is delivered only if
/// both allow it: consent given after the event does not reach back to it, and consent
/// withdrawn since the event wins.
struct Verdicts {
    now: Grants,
    /// `None` when the consent in force at the event's time is the current one.
    then: Option<Grants>,
}

impl Verdicts {
    fn new(table: &ConsentTable, view: &EventView<'_>, event_time_ms: i64) -> Verdicts {
        let lookup =
            |id: &Option<std::borrow::Cow<'_, str>>| id.as_deref().and_then(|id| table.get(id));
        let now_state = person_state(lookup(&view.user_id), lookup(&view.anonymous_id));
        let now = Grants::combine(now_state, view.stamp);
        let current_then = now_state.is_none_or(|s| s.updated_at_ms <= event_time_ms)
            && [&view.user_id, &view.anonymous_id]
                .iter()
                .all(|id| lookup(id).is_none_or(|s| s.updated_at_ms <= event_time_ms));
        if current_then {
            return Verdicts { now, then: None };
        }
        let at = |id: &Option<std::borrow::Cow<'_, str>>| -> Option<ConsentState> {
            match id.as_deref().map(|id| table.state_at(id, event_time_ms)) {
                Some(StateAt::Known(state)) => Some(state),
                Some(StateAt::None) | None => None,
            }
        };
        let then_state = person_state(at(&view.user_id), at(&view.anonymous_id));
        Verdicts {
            now,
            then: Some(Grants::combine(then_state, view.stamp)),
        }
    }

    fn decide(
        &self,
        view: &EventView<'_>,
        rule: &Rule,
        when_missing: WhenMissing,
    ) -> Result<(), crate::decision::DropReason> {
        decide(view, self.now, rule, when_missing)?;
        match self.then {
            Some(then) => decide(view, then, rule, when_missing),
            None => Ok(()),
        }
    }
}
