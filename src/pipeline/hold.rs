//! The pre-consent hold (`[hold] enabled = true`).
//!
//! An event whose user has no consent source at all is written to the hold topic instead of
//! being dropped for the destinations that need consent, and its input offset is committed
//! like any other: the hold never blocks the input. The hold topic is read by the same
//! consumer group. A held event whose user has chosen by then is judged at once by that
//! choice; one older than `max_age` is dropped (`hold_expired`); any other waits here, in
//! memory, until the user's first choice is applied or it expires. A waiting event's offset in
//! the hold topic is not committed until it is resolved, so a restart reads it again: nothing
//! held is lost or leaked across restarts.

use std::collections::{BTreeMap, HashMap, HashSet};

use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};

use crate::delivery::tag::InputPartition;
use crate::telemetry;

/// Header of a held record: the names of the destinations still to judge, comma-separated.
pub const DESTINATIONS_HEADER: &str = "consent-enforcer-hold-destinations";
/// Header of a held record: when it was held, Unix milliseconds.
pub const HELD_AT_HEADER: &str = "consent-enforcer-held-at";

/// A held event waiting for its user's first choice.
pub struct Waiting {
    pub input: InputPartition,
    /// The assignment of `input` it was read under; stale once the partition moves.
    pub assignment: u64,
    pub seq: u32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Option<OwnedHeaders>,
    pub timestamp: Option<i64>,
    /// Indices of the destinations still to judge.
    pub destinations: Vec<usize>,
    pub held_at_ms: i64,
    /// Its `userId` and `anonymousId`: whichever chooses first releases it.
    pub users: Vec<Box<str>>,
    /// How it is to be resolved, once known; it may still wait behind an earlier event of
    /// its partition (exactly-once).
    pub resolution: Option<Resolution>,
}

/// How a held event is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Its user chose: judged by that choice.
    Released,
    /// It waited longer than `max_age`: dropped.
    Expired,
}

impl Waiting {
    /// Everything the event keeps in memory while it waits: value, key, every header, its
    /// identifiers (stored with it and as keys of the by-user index), destinations, and the
    /// fixed cost of its slot and index entries. Fixed while it waits, so what is added at
    /// `wait` is what is taken off when it leaves.
    fn bytes(&self) -> usize {
        const PER_HEADER: usize = 32;
        const PER_USER: usize = 48;
        const PER_EVENT: usize = 128;
        let headers = self.headers.as_ref().map_or(0, |headers| {
            headers
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + PER_HEADER)
                .sum()
        });
        let users: usize = self.users.iter().map(|u| 2 * u.len() + PER_USER).sum();
        std::mem::size_of::<Waiting>()
            + PER_EVENT
            + self.value.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + headers
            + users
            + self.destinations.len() * std::mem::size_of::<usize>()
    }
}

pub struct Hold {
    pub topic: String,
    pub max_age_ms: i64,
    max_bytes: usize,
    waiting: Vec<Option<Waiting>>,
    free: Vec<usize>,
    /// Waiting events by partition and offset.
    order: BTreeMap<(InputPartition, i64), usize>,
    /// Resolve events in offset order per partition (exactly-once): the hold topic's
    /// committed offset cannot pass a waiting event, so a later event resolved before it
    /// would be read and resolved again after a restart, its writes committed twice.
    in_order: bool,
    /// Slots of the events waiting for each identifier (a set: taking one is O(1), so
    /// releasing a flood of one user's events stays linear).
    by_user: HashMap<Box<str>, HashSet<usize>>,
    /// Memory taken by the events waiting for each identifier.
    user_bytes: HashMap<Box<str>, usize>,
    /// Users whose consent was applied while some of their events wait.
    chosen: Vec<Box<str>>,
    /// Events taken to be judged, waiting for the privacy topic (with `[privacy]`).
    pub gate: gate::ReleaseGate,
    bytes: usize,
    count: usize,
    released: metrics::Counter,
    expired: metrics::Counter,
    held_now: metrics::Gauge,
    held_bytes: metrics::Gauge,
    over_cap: metrics::Counter,
}

/// Events waiting for one identifier's first choice, at most.
pub const MAX_WAITING_PER_USER: usize = 10_000;

impl Hold {
    pub fn new(topic: String, max_age_ms: i64, max_bytes: usize, in_order: bool) -> Hold {
        Hold {
            topic,
            max_age_ms,
            max_bytes,
            waiting: Vec::new(),
            free: Vec::new(),
            order: BTreeMap::new(),
            in_order,
            by_user: HashMap::new(),
            user_bytes: HashMap::new(),
            chosen: Vec::new(),
            gate: gate::ReleaseGate::default(),
            bytes: 0,
            count: 0,
            released: metrics::counter!(telemetry::HELD_RELEASED),
            expired: metrics::counter!(telemetry::HELD_EXPIRED),
            held_now: metrics::gauge!(telemetry::HELD_NOW),
            held_bytes: metrics::gauge!(telemetry::HELD_BYTES),
            over_cap: metrics::counter!(telemetry::HELD_OVER_CAP),
        }
    }

    /// True when waiting events take more memory than allowed: stop reading the hold topic.
    pub fn full(&self) -> bool {
        self.bytes > self.max_bytes
    }

    /// True when reading the hold topic may resume.
    pub fn has_room(&self) -> bool {
        self.bytes <= self.max_bytes / 2
    }

    pub fn expired(&self, held_at_ms: i64, now_ms: i64) -> bool {
        older_than(self.max_age_ms, held_at_ms, now_ms)
    }

    /// Keeps an event until one of its users chooses.
    pub fn wait(&mut self, event: Waiting) {
        let bytes = event.bytes();
        self.bytes += bytes;
        self.count += 1;
        for user in &event.users {
            *self.user_bytes.entry(user.clone()).or_default() += bytes;
        }
        let users = event.users.clone();
        let position = (event.input, event.offset);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.waiting[slot] = Some(event);
                slot
            }
            None => {
                self.waiting.push(Some(event));
                self.waiting.len() - 1
            }
        };
        self.order.insert(position, slot);
        for user in users {
            self.by_user.entry(user).or_default().insert(slot);
        }
        self.report();
    }

    /// Whether an event resolved now on `input` must wait behind earlier ones instead: in
    /// exactly-once mode, while any event of its partition waits.
    pub fn must_wait_behind(&self, input: InputPartition) -> bool {
        self.in_order
            && self
                .order
                .range((input, i64::MIN)..=(input, i64::MAX))
                .next()
                .is_some()
    }

    /// Counts a held record resolved as soon as it was read back.
    pub fn resolved_on_read(&self, resolution: Resolution) {
        match resolution {
            Resolution::Released => self.released.increment(1),
            Resolution::Expired => self.expired.increment(1),
        }
    }

    /// True if one of `users` already has [`MAX_WAITING_PER_USER`] events, or a sixteenth
    /// of `hold.max_bytes`, waiting: another is dropped at once rather than held (counted), so
    /// that one identifier cannot fill the hold's memory for everyone else.
    pub fn at_cap(&self, users: &[Box<str>]) -> bool {
        let max_user_bytes = self.max_bytes / 16;
        let at_cap = users.iter().any(|user| {
            self.by_user
                .get(user)
                .is_some_and(|slots| slots.len() >= MAX_WAITING_PER_USER)
                || self
                    .user_bytes
                    .get(user)
                    .is_some_and(|bytes| *bytes >= max_user_bytes)
        });
        if at_cap {
            self.over_cap.increment(1);
        }
        at_cap
    }

    /// Called when a user's consent is applied.
    pub fn consent_applied(&mut self, user: &str) {
        if self.by_user.contains_key(user) {
            self.chosen.push(user.into());
        }
    }

    /// Takes the events whose user has chosen since the last call (and those resolved before
    /// that waited behind them).
    pub fn take_chosen(&mut self) -> Vec<Waiting> {
        for user in std::mem::take(&mut self.chosen) {
            for slot in self.by_user.get(&user).cloned().unwrap_or_default() {
                self.resolve(slot, Resolution::Released);
            }
        }
        self.take_resolved()
    }

    /// Takes the events that waited longer than `max_age` (and those resolved before that
    /// waited behind them).
    pub fn take_expired(&mut self, now_ms: i64) -> Vec<Waiting> {
        let max_age_ms = self.max_age_ms;
        let slots: Vec<usize> = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                w.as_ref().is_some_and(|w| {
                    w.resolution.is_none() && older_than(max_age_ms, w.held_at_ms, now_ms)
                })
            })
            .map(|(slot, _)| slot)
            .collect();
        for slot in slots {
            self.resolve(slot, Resolution::Expired);
        }
        self.take_resolved()
    }

    fn resolve(&mut self, slot: usize, resolution: Resolution) {
        if let Some(Some(event)) = self.waiting.get_mut(slot) {
            event.resolution.get_or_insert(resolution);
        }
    }

    /// Takes the resolved events that may go: all of them, or in exactly-once mode those not
    /// behind an unresolved one of their partition.
    fn take_resolved(&mut self) -> Vec<Waiting> {
        let mut slots = Vec::new();
        let mut blocked: Option<InputPartition> = None;
        for (&(input, _), &slot) in &self.order {
            if self.in_order && blocked == Some(input) {
                continue;
            }
            match self.waiting.get(slot).and_then(Option::as_ref) {
                Some(event) if event.resolution.is_some() => slots.push(slot),
                _ => blocked = Some(input),
            }
        }
        let events: Vec<Waiting> = slots
            .into_iter()
            .filter_map(|slot| self.take(slot))
            .collect();
        for event in &events {
            match event.resolution {
                Some(Resolution::Expired) => self.expired.increment(1),
                _ => self.released.increment(1),
            }
        }
        events
    }

    /// Forgets events that will be read again or belong to another instance now: those of
    /// `input` from `offset` on (after an aborted transaction rewound it), or all of `input`.
    pub fn forget(&mut self, input: InputPartition, from_offset: i64) {
        self.take_where(|w| w.input == input && w.offset >= from_offset);
        self.gate.forget_from(input, from_offset);
    }

    /// Forgets events read under an assignment that is over.
    pub fn retain_assigned(&mut self, current: impl Fn(InputPartition) -> Option<u64>) {
        self.take_where(|w| current(w.input) != Some(w.assignment));
        self.gate.forget(|w| current(w.input) != Some(w.assignment));
    }

    /// Takes every waiting event that `matches`.
    fn take_where(&mut self, matches: impl Fn(&Waiting) -> bool) -> Vec<Waiting> {
        let slots: Vec<usize> = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| w.as_ref().is_some_and(&matches))
            .map(|(slot, _)| slot)
            .collect();
        slots
            .into_iter()
            .filter_map(|slot| self.take(slot))
            .collect()
    }

    fn take(&mut self, slot: usize) -> Option<Waiting> {
        let event = self.waiting.get_mut(slot)?.take()?;
        // Unlink it from its users before the slot can be reused by another event.
        let bytes = event.bytes();
        for user in &event.users {
            if let Some(slots) = self.by_user.get_mut(user) {
                slots.remove(&slot);
                if slots.is_empty() {
                    self.by_user.remove(user);
                }
            }
            if let Some(held) = self.user_bytes.get_mut(user) {
                *held = held.saturating_sub(bytes);
                if *held == 0 {
                    self.user_bytes.remove(user);
                }
            }
        }
        self.order.remove(&(event.input, event.offset));
        self.free.push(slot);
        self.bytes -= bytes;
        self.count -= 1;
        self.report();
        Some(event)
    }

    fn report(&self) {
        self.held_now.set(self.count as f64);
        self.held_bytes.set(self.bytes as f64);
    }
}

/// The headers for the hold topic: the event's own, plus where it came from, which
/// destinations wait, and since when.
pub fn held_headers(
    message: &BorrowedMessage<'_>,
    destinations: &str,
    now_ms: i64,
) -> OwnedHeaders {
    let headers = crate::delivery::headers::without_reserved(message.headers())
        .unwrap_or_else(|| OwnedHeaders::new_with_capacity(3));
    let source = format!(
        "{}/{}/{}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    let held_at = now_ms.to_string();
    headers
        .insert(Header {
            key: crate::delivery::dead_letter::SOURCE_HEADER,
            value: Some(source.as_str()),
        })
        .insert(Header {
            key: DESTINATIONS_HEADER,
            value: Some(destinations),
        })
        .insert(Header {
            key: HELD_AT_HEADER,
            value: Some(held_at.as_str()),
        })
}

/// What a held record says, from its headers (the enforcer's own are the last of their
/// names: it appends them).
#[derive(Default)]
pub struct HeldHeaders {
    /// The destinations still to judge, comma-separated.
    pub destinations: Option<String>,
    /// When it was held, Unix milliseconds.
    pub held_at: Option<i64>,
    /// Where the event came from: `topic/partition/offset` of the input record.
    pub source: Option<String>,
    /// The event's own headers, without any of reserved names (the enforcer's, and any a
    /// record held by an older version kept).
    pub original: Option<OwnedHeaders>,
}

pub fn read_held(message: &BorrowedMessage<'_>) -> HeldHeaders {
    let Some(headers) = message.headers() else {
        return HeldHeaders::default();
    };
    let all: Vec<_> = crate::delivery::headers::raw(headers).collect();
    let text = |index: usize| all[index].value.and_then(|v| std::str::from_utf8(v).ok());
    let position = |name: &str| all.iter().rposition(|h| h.name == name.as_bytes());
    let destinations = position(DESTINATIONS_HEADER)
        .and_then(text)
        .map(str::to_owned);
    let held_at = position(HELD_AT_HEADER)
        .and_then(text)
        .and_then(|v| v.parse().ok());
    let source = position(crate::delivery::dead_letter::SOURCE_HEADER)
        .and_then(text)
        .filter(|source| is_source(source))
        .map(str::to_owned);
    HeldHeaders {
        destinations,
        held_at,
        source,
        original: crate::delivery::headers::without_reserved(Some(headers)),
    }
}

/// Whether `text` is a `topic/partition/offset` the enforcer could have written: a forged
/// one copied into a dead letter must not make it too large to write.
fn is_source(text: &str) -> bool {
    let mut parts = text.rsplitn(3, '/');
    let (Some(offset), Some(partition), Some(topic)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    // Kafka topic names are at most 249 characters.
    text.len() <= 300
        && !topic.is_empty()
        && partition.parse::<i32>().is_ok()
        && offset.parse::<i64>().is_ok()
}

/// Whether an event held at `held_at_ms` has waited longer than `max_age_ms` by `now_ms`.
fn older_than(max_age_ms: i64, held_at_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(held_at_ms) > max_age_ms
}

mod gate;
#[cfg(test)]
mod tests;
