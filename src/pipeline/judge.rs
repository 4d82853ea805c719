//! Judges one event against every destination and sends it where it may go; with the hold
//! enabled, also holds, releases and expires events waiting for a first choice.

use std::borrow::Cow;

use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::BaseRecord;

use super::hold::{self, Hold, Resolution, Waiting};
use super::learn::Learner;
use crate::config::DeadLetterPayload;
use crate::consent::ConsentTable;
use crate::decision::{
    dated_before_window, decide, event_time_ms, person_state, DropReason, Law, Rule, Verdicts,
};
use crate::delivery::limits::{self, WriteLimits};
use crate::delivery::tag::{InputPartition, Tag, Target};
use crate::delivery::{self, dead_letter, Delivery};
use crate::event::{self, EventView};
use crate::internal_events::{self as events, InternalEvent};
use crate::vocabulary::Vocabulary;

pub struct Judge<'a> {
    pub delivery: &'a Delivery,
    pub vocabulary: &'a Vocabulary,
    pub rules: &'a [Rule],
    pub destination_names: Vec<&'a str>,
    pub destination_topics: Vec<&'a str>,
    pub dead_letter_topic: &'a str,
    pub dead_letter_payload: DeadLetterPayload,
    /// The largest records the dead-letter topic accepts.
    pub limits: WriteLimits,
    /// Jurisdictions, defaults and GPC (or `when_missing`).
    pub law: &'a Law,
    pub max_event_bytes: usize,
    /// `consent.history_window` (at least `hold.max_age`): an event dated further back than
    /// this before its record time is not held.
    pub hold_window_ms: i64,
    /// The hold topic, when the hold is enabled.
    pub hold_topic: Option<&'a str>,
    /// Co-partitioned mode: a held event goes to the hold partition of its input partition's
    /// number, whose consent table is the one that sees its user.
    pub copartitioned: bool,
    /// With `consent.learn_from_events`.
    pub learner: Option<Learner<'a>>,
}

/// Where one event's writes are tracked.
#[derive(Clone, Copy)]
struct Slot {
    input: InputPartition,
    seq: u32,
}

impl Slot {
    fn tag(self, target: Target) -> usize {
        Tag {
            target,
            input: self.input,
            seq: self.seq,
        }
        .encode()
    }
}

/// The bytes of an event as they go out.
struct Outgoing<'m> {
    key: Option<&'m [u8]>,
    value: Option<&'m [u8]>,
    timestamp: Option<i64>,
}

impl<'m> Outgoing<'m> {
    fn record<'t>(&self, topic: &'t str, tag: usize) -> BaseRecord<'t, [u8], [u8], usize>
    where
        'm: 't,
    {
        BaseRecord {
            topic,
            partition: None,
            payload: self.value,
            key: self.key,
            timestamp: self.timestamp,
            headers: None,
            delivery_opaque: tag,
        }
    }
}

impl Judge<'_> {
    /// Judges an event read from an input topic or the hold topic, when assignments numbered
    /// below `assignments_before` were the ones made before it was read.
    pub fn event(
        &self,
        table: &ConsentTable,
        message: &BorrowedMessage<'_>,
        assignments_before: u64,
        now_ms: i64,
        hold: Option<&mut Hold>,
    ) {
        let Some(input) = self
            .delivery
            .inputs()
            .input_partition(message.topic(), message.partition())
        else {
            // Not trackable (a partition number past 65535): never commit past it.
            events::UntrackablePartition {
                topic: message.topic(),
                partition: message.partition(),
            }
            .emit();
            return;
        };
        if !self
            .delivery
            .inputs()
            .owned_under_assignment_before(input, assignments_before)
        {
            // Read before its partition was revoked (and perhaps assigned again, when the
            // consumer reads it again from the committed offset): the owner judges it then.
            return;
        }
        let slot = Slot {
            input,
            seq: self.delivery.begin(input, message.offset()),
        };
        let held = self
            .hold_topic
            .is_some_and(|topic| topic == message.topic());
        if !held {
            let metrics = self.delivery.metrics();
            metrics.received.increment(1);
            let reserved = delivery::headers::reserved_count(message.headers());
            if reserved > 0 {
                metrics.headers_stripped.increment(reserved as u64);
            }
        }
        let outgoing = Outgoing {
            key: message.key(),
            value: message.payload(),
            timestamp: message.timestamp().to_millis(),
        };
        match event::parse(message.payload(), self.max_event_bytes, self.vocabulary) {
            Err(reason) => self.dead_letter(&outgoing, message, slot, reason),
            Ok(view) if held => {
                if let Some(hold) = hold {
                    self.held(table, message, &outgoing, &view, slot, now_ms, hold);
                }
            }
            Ok(view) => {
                if view.unknown_names > 0 {
                    let unknown = u64::from(view.unknown_names);
                    self.delivery.metrics().unknown_names.increment(unknown);
                }
                let time = event_time_ms(view.timestamp_ms, outgoing.timestamp, now_ms);
                let verdicts = Verdicts::new(table, &view, time, self.law);
                // Events of a user with no consent source at all wait for a first choice; not
                // one dated long before it arrived (replayed old data, a clock far behind),
                // which a first choice made now must not reach back to.
                let holding = self.hold_topic.is_some()
                    && verdicts.now().is_missing()
                    && !self.dated_before_window(&view, outgoing.timestamp, now_ms);
                let mut waiting_for: Vec<&str> = Vec::new();
                for (i, rule) in self.rules.iter().enumerate() {
                    match verdicts.decide(&view, rule) {
                        Ok(()) => {
                            if !self.send(&outgoing, message, slot, i) {
                                break;
                            }
                        }
                        Err(DropReason::NoConsent) if holding => {
                            waiting_for.push(self.destination_names[i]);
                        }
                        Err(reason) => self.delivery.metrics().dropped(i, reason),
                    }
                }
                if let Some(learner) = &self.learner {
                    if let Some((user, state)) =
                        learner.learned(table, &view, time, self.vocabulary)
                    {
                        let tag = slot.tag(Target::Learned);
                        learner.write(
                            self.delivery,
                            &user,
                            &state,
                            view.message_id.as_deref(),
                            self.vocabulary,
                            tag,
                        );
                    }
                }
                if let (false, Some(topic)) = (waiting_for.is_empty(), self.hold_topic) {
                    let mut record = outgoing.record(topic, slot.tag(Target::Hold));
                    record.partition = self.copartitioned.then_some(message.partition());
                    record.headers =
                        Some(hold::held_headers(message, &waiting_for.join(","), now_ms));
                    let _ = self.delivery.send(record);
                }
            }
        }
        self.delivery.end(input, slot.seq);
    }

    /// Writes the event to the dead-letter topic with the reason and its source; without its
    /// value and headers when the whole would not fit the topic.
    fn dead_letter(
        &self,
        outgoing: &Outgoing<'_>,
        message: &BorrowedMessage<'_>,
        slot: Slot,
        reason: event::Malformed,
    ) {
        self.dead_letter_with(outgoing, message, slot, reason, None);
    }

    /// [`Judge::dead_letter`]; for a record read from the hold topic, with the source of the
    /// event it held (`consent-enforcer-held-source`): the hold's own source header is not
    /// carried, and the hold topic's retention is short.
    fn dead_letter_with(
        &self,
        outgoing: &Outgoing<'_>,
        message: &BorrowedMessage<'_>,
        slot: Slot,
        reason: event::Malformed,
        held_source: Option<&str>,
    ) {
        let keep = self.dead_letter_payload == DeadLetterPayload::Keep;
        let mut record =
            outgoing.record(self.dead_letter_topic, slot.tag(Target::DeadLetter(reason)));
        if !keep {
            record.payload = None;
            record.key = None;
        }
        let record_bytes = limits::record_bytes(record.key, record.payload, message.headers());
        let source = (message.topic(), message.partition(), message.offset());
        let size = message.payload().map_or(0, <[u8]>::len);
        if record_bytes <= self.limits.dead_letter {
            let headers = dead_letter::headers(message.headers(), reason, source);
            record.headers = Some(if keep {
                headers
            } else {
                dead_letter::with_original_size(headers, size)
            });
        } else {
            record.payload = None;
            if record.key.is_some_and(|key| {
                key.len() + limits::RECORD_OVERHEAD_BYTES > self.limits.dead_letter
            }) {
                record.key = None;
            }
            record.headers = Some(dead_letter::without_original(reason, source, size));
        }
        if let Some(held_source) = held_source {
            record.headers = record
                .headers
                .take()
                .map(|headers| dead_letter::with_held_source(headers, held_source));
        }
        let _ = self.delivery.send(record);
    }

    fn dated_before_window(
        &self,
        view: &EventView<'_>,
        record_time_ms: Option<i64>,
        now_ms: i64,
    ) -> bool {
        dated_before_window(
            view.timestamp_ms,
            record_time_ms,
            now_ms,
            self.hold_window_ms,
        )
    }

    /// Writes the event to destination `i`, with its own headers. False if that failed.
    fn send(
        &self,
        outgoing: &Outgoing<'_>,
        message: &BorrowedMessage<'_>,
        slot: Slot,
        i: usize,
    ) -> bool {
        let mut write = outgoing.record(
            self.destination_topics[i],
            slot.tag(Target::Destination(i as u8)),
        );
        write.headers = delivery::headers::without_reserved(message.headers());
        self.delivery.send(write).is_ok()
    }

    /// A record read back from the hold topic: judged now if its user has chosen, dropped if
    /// too old, kept waiting otherwise.
    #[allow(clippy::too_many_arguments)]
    fn held(
        &self,
        table: &ConsentTable,
        message: &BorrowedMessage<'_>,
        outgoing: &Outgoing<'_>,
        view: &EventView<'_>,
        slot: Slot,
        now_ms: i64,
        hold: &mut Hold,
    ) {
        let hold::HeldHeaders {
            destinations: names,
            held_at,
            source,
            original: headers,
        } = hold::read_held(message);
        // The hold topic is trusted only as far as its headers make sense: a record without
        // the destinations header, or naming one not configured, was not written by this
        // enforcer as configured (a forged or foreign record, or a destination removed since).
        let Some(destinations) = names.as_deref().and_then(|n| self.destination_indices(n)) else {
            let reason = event::Malformed::BadHoldHeaders;
            self.dead_letter_with(outgoing, message, slot, reason, source.as_deref());
            return;
        };
        // Never later than now: a held-at in the future would never expire, and its parked
        // offset would hold the hold partition's commits back for good. (Not clamped to the
        // record's timestamp: the enforcer copies the event's own timestamp to the hold.)
        let held_at_ms = held_at
            .or(message.timestamp().to_millis())
            .unwrap_or(now_ms)
            .min(now_ms);
        let event = Waiting {
            input: slot.input,
            assignment: self.delivery.inputs().assignment(slot.input).unwrap_or(0),
            seq: slot.seq,
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
            timestamp: message.timestamp().to_millis(),
            destinations,
            held_at_ms,
            users: [&view.user_id, &view.anonymous_id]
                .into_iter()
                .flatten()
                .map(|id| Box::from(id.as_ref()))
                .collect(),
            resolution: None,
        };
        // When the user first chose, as far as the table knows (a stamp is a choice made
        // with the event itself). A record read back late, after the enforcer was stopped or
        // behind, is released if that choice came within `max_age`, expired otherwise.
        let first_choice_ms = [&view.user_id, &view.anonymous_id]
            .into_iter()
            .flatten()
            .filter_map(|id| table.first_known_ms(id))
            .chain(view.stamps().map(|_| held_at_ms))
            .min();
        let chosen = first_choice_ms.is_some();
        let chosen_in_time =
            first_choice_ms.is_some_and(|at| at <= held_at_ms.saturating_add(hold.max_age_ms));
        // Never held by this version; one held by an earlier one must not be released either.
        let too_old = self.dated_before_window(view, message.timestamp().to_millis(), now_ms);
        let resolution = if too_old {
            Some(Resolution::Expired)
        } else if chosen_in_time {
            Some(Resolution::Released)
        } else if hold.expired(held_at_ms, now_ms) {
            Some(Resolution::Expired)
        } else if chosen {
            Some(Resolution::Released)
        } else if hold.at_cap(&event.users) {
            // Fail closed and bounded: dropped as if expired, counted as over the cap.
            Some(Resolution::Expired)
        } else {
            None
        };
        match resolution {
            Some(resolution) if !hold.must_wait_behind(slot.input) => {
                hold.resolved_on_read(resolution);
                match resolution {
                    Resolution::Released => self.judge_released(table, view, &event),
                    Resolution::Expired => self.expire(&event),
                }
            }
            resolution => {
                self.delivery.park(slot.input, slot.seq);
                let mut event = Waiting {
                    resolution,
                    ..event
                };
                if resolution == Some(Resolution::Expired) {
                    // Waiting behind an earlier event only to be dropped: its payload is not
                    // needed, so it does not take memory.
                    event.value = Vec::new();
                    event.key = None;
                    event.headers = None;
                }
                hold.wait(event);
            }
        }
    }

    /// Judges a waiting event whose user has chosen, or drops an expired one, and resolves it.
    pub fn resolve(&self, table: &ConsentTable, event: Waiting) {
        let expired = event.resolution == Some(Resolution::Expired);
        if self.delivery.inputs().assignment(event.input) != Some(event.assignment) {
            // Its partition moved: the new owner reads it again from the hold topic.
            return;
        }
        self.delivery.rejoin(event.input, event.offset);
        if expired {
            self.expire(&event);
        } else {
            match event::parse(Some(&event.value), usize::MAX, self.vocabulary) {
                Ok(view) => self.judge_released(table, &view, &event),
                // It parsed when it was held; nothing else can be done with it but waiting.
                Err(_) => self.expire(&event),
            }
        }
        self.delivery.unpark(event.input, event.seq);
    }

    fn expire(&self, event: &Waiting) {
        for &i in &event.destinations {
            self.delivery.metrics().dropped(i, DropReason::HoldExpired);
        }
    }

    /// Judged by the user's choice now: the hold exists for events from before the first
    /// choice, so the consent at the event's time is not asked.
    fn judge_released(&self, table: &ConsentTable, view: &EventView<'_>, event: &Waiting) {
        let lookup = |id: &Option<Cow<'_, str>>| id.as_deref().and_then(|id| table.get(id));
        let grants = self.law.grants(
            person_state(lookup(&view.user_id), lookup(&view.anonymous_id)),
            view,
        );
        let slot = Slot {
            input: event.input,
            seq: event.seq,
        };
        let suppressed = [&view.user_id, &view.anonymous_id]
            .into_iter()
            .flatten()
            .any(|id| table.suppressed(id, event.held_at_ms));
        for &i in &event.destinations {
            let verdict = if suppressed {
                Err(DropReason::Suppressed)
            } else {
                decide(view, grants, &self.rules[i])
            };
            match verdict {
                Ok(()) => {
                    let write = BaseRecord::<[u8], [u8], usize> {
                        topic: self.destination_topics[i],
                        partition: None,
                        payload: Some(&event.value),
                        key: event.key.as_deref(),
                        timestamp: event.timestamp,
                        headers: event.headers.clone(),
                        delivery_opaque: slot.tag(Target::Destination(i as u8)),
                    };
                    if self.delivery.send(write).is_err() {
                        break;
                    }
                }
                Err(reason) => self.delivery.metrics().dropped(i, reason),
            }
        }
    }

    /// Destination indices from a held record's header; every destination if it is missing.
    /// The destinations a hold header names; None if it names none or one not configured.
    fn destination_indices(&self, names: &str) -> Option<Vec<usize>> {
        let mut indices: Vec<usize> = names
            .split(',')
            .map(|name| self.destination_names.iter().position(|d| *d == name))
            .collect::<Option<_>>()?;
        // A name listed twice is judged once.
        indices.sort_unstable();
        indices.dedup();
        (!indices.is_empty()).then_some(indices)
    }
}
