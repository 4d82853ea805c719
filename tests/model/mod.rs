//! A deliberately naive reference model of the consent rules, written from the README alone
//! ("The decision"; "Guarantees" 1-3; "Consent records"; the `input.max_event_bytes`,
//! `consent.when_missing`, `consent.history_window`, `consent.history_max_changes` and
//! `[[destination]]` keys) and sharing no code with `src/`: the config is read from its TOML
//! text, events and consent records are read with serde_json into a plain JSON tree, every
//! consent record of every identifier is kept in a list in arrival order, and every question
//! is answered by replaying those lists from the start. Slow and obvious on purpose.
//!
//! Where the README leaves room for more than one reading, the one taken is marked
//! `Reading:` where it is used.

mod config;
mod event;
mod history;
mod json;
mod privacy;
mod record;
mod rfc3339;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use config::{subscribed, GPC_FACT, JURISDICTION_FACT};
pub use config::{Config, Destination};
use history::{Arrival, At, Now, Outcome, State, Timeline};
use json::Json;
use record::Meaning;

/// README, "Consent records": keys longer than this are ignored.
const MAX_IDENTIFIER_BYTES: usize = 512;

/// What applying one consent record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Null or non-UTF-8 key: ignored.
    BadKey,
    /// README: "key longer than 512 bytes | ignored".
    KeyTooLong,
    Removed,
    Stored {
        future_dated: bool,
    },
    /// Ignored; the state re-published: its configured categories granted, and its time.
    Stale {
        republished: Vec<String>,
        at: i64,
    },
    /// Ignored while failed closed; the failed-closed state re-published.
    StaleWhileFailed,
    FailedClosed(&'static str),
}

/// What a person has stored now: `None` if neither identifier has a state, else the
/// categories the newer state grants (nothing when failed closed).
pub type Stored = Option<Rc<BTreeSet<String>>>;

/// A consent record judged, not yet applied (see [`Model::prepare`]).
pub struct Pending {
    record: Option<(String, Arrival)>,
    outcome: RecordOutcome,
    changes_now: bool,
}

impl Pending {
    /// Whether it changes what its identifier has stored now (the only thing a person's
    /// "now" depends on).
    pub fn changes_now(&self) -> bool {
        self.changes_now
    }
}

/// Deliver, or drop with the README's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Drop(&'static str),
}

/// What happens to one event: dead-lettered with a reason, or one verdict per destination in
/// config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    DeadLetter(&'static str),
    Judged(Vec<Verdict>),
}

/// What made the difference in one judgement, to measure what the generated cases cover.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trace {
    /// Some destination allowed now was dropped by the consent at the event's time.
    pub then_dropped: bool,
    /// An identifier's state at the event's time is unknown.
    pub unknown_then: bool,
    /// Several states may have been in force at the event's time (its own millisecond).
    pub same_millisecond: bool,
    /// An identifier of the event has superseded states no longer known: the bound that
    /// evicted them (`"window"`, `"changes"`, `"states"`).
    pub evicted_by: Option<&'static str>,
    /// An identifier of the event is failed closed.
    pub failed_closed: bool,
    /// The event's `timestamp` was not taken as it is (capped, too old, or missing).
    pub time_not_timestamp: bool,
    /// The event's timestamp was older than its record time by more than the window.
    pub older_than_window: bool,
    /// The event carries RudderStack's `context.consentManagement`.
    pub rudderstack_stamp: bool,
    /// A stamp of the event names a category by an alias.
    pub alias_in_stamp: bool,
    /// A destination with a `channel` was delivered to.
    pub channel_delivered: bool,
    /// An identifier of the event is suppressed.
    pub suppressed: bool,
    /// ... only because the event is dated within a suppression lifted since.
    pub dated_in_lifted: bool,
    /// A GPC signal withheld a category some source or default granted.
    pub gpc_withheld: bool,
    /// A user with no source was granted a jurisdiction's default.
    pub default_granted: bool,
    /// The jurisdiction came from the state, or from the event's location.
    pub jurisdiction_of_state: bool,
    pub jurisdiction_of_location: bool,
}

/// The consent sources of an event at one time, combined.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sources {
    /// No source is present: the categories the law grants such a user (README,
    /// "Jurisdictions": the jurisdiction's default, or `when_missing`).
    Missing(BTreeSet<String>),
    /// Which state was in force is unknown: "no consent", whatever else says.
    Unknown,
    /// The categories every present source has `true`.
    Granted(BTreeSet<String>),
}

/// A person's stored state at one time: the newer of the two identifiers' states.
#[derive(Debug, Clone, Copy)]
enum Person<'a> {
    FailedClosed,
    State(&'a State),
}

pub struct Model {
    config: Rc<Config>,
    /// Every consent record with a usable key, per identifier, in arrival order.
    records: BTreeMap<String, Vec<Arrival>>,
    /// When the history was last swept ("the history is swept periodically"), if ever.
    swept_ms: i64,
    /// What [`Model::sources`] saw, for the trace.
    seen: std::cell::Cell<Trace>,
    /// Every privacy record with a usable key, per identifier, in arrival order, with its
    /// record time.
    privacy: BTreeMap<String, Vec<(privacy::Request, i64)>>,
}

impl Model {
    pub fn new(config: Rc<Config>) -> Model {
        Model {
            config,
            records: BTreeMap::new(),
            swept_ms: i64::MIN,
            seen: std::cell::Cell::new(Trace::default()),
            privacy: BTreeMap::new(),
        }
    }

    /// The periodic sweep runs at `now_ms`: superseded states that ended more than
    /// `consent.history_window` before it are forgotten.
    pub fn sweep(&mut self, now_ms: i64) {
        self.swept_ms = self.swept_ms.max(now_ms);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every identifier some consent record was keyed by.
    pub fn identifiers(&self) -> Vec<String> {
        self.records.keys().cloned().collect()
    }

    /// A consent record arrives (key and value as on the topic, `None` for null) at `now_ms`.
    pub fn record(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        kafka_timestamp_ms: Option<i64>,
        now_ms: i64,
    ) -> RecordOutcome {
        let pending = self.prepare(key, value, kafka_timestamp_ms, now_ms);
        self.commit(pending)
    }

    /// A consent record read and judged against its identifier's records so far, not yet
    /// applied.
    pub fn prepare(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        kafka_timestamp_ms: Option<i64>,
        now_ms: i64,
    ) -> Pending {
        let Some(user) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            return Pending {
                record: None,
                outcome: RecordOutcome::BadKey,
                changes_now: false,
            };
        };
        if user.len() > MAX_IDENTIFIER_BYTES {
            return Pending {
                record: None,
                outcome: RecordOutcome::KeyTooLong,
                changes_now: false,
            };
        }
        let arrival = Arrival {
            meaning: record::read(value, &self.config),
            // "For a record without one, the time it is read." Reading: it stands in for the
            // Kafka timestamp for the cap on `updatedAt` too, not only for a missing one.
            record_time: kafka_timestamp_ms.unwrap_or(now_ms),
            now: now_ms,
        };
        let mut timeline = Timeline::replay(self.records.get(user).map_or(&[][..], Vec::as_slice));
        let before = timeline.now_owned();
        let outcome = match timeline.apply(&arrival) {
            Outcome::Removed => RecordOutcome::Removed,
            Outcome::Stored { future_dated } => RecordOutcome::Stored { future_dated },
            Outcome::FailedClosed(reason) => RecordOutcome::FailedClosed(reason),
            Outcome::StaleWhileFailed => RecordOutcome::StaleWhileFailed,
            // "A re-published state lists only the categories the configuration knows."
            Outcome::Stale { stored } => RecordOutcome::Stale {
                republished: self
                    .config
                    .categories
                    .iter()
                    .filter(|c| stored.grants.contains(*c))
                    .cloned()
                    .collect(),
                at: stored.at,
            },
        };
        Pending {
            changes_now: timeline.now_owned() != before,
            record: Some((user.to_owned(), arrival)),
            outcome,
        }
    }

    /// A privacy record arrives: what it is, as the README's outcome (`bad_key` for a key
    /// that is no identifier).
    pub fn privacy(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        kafka_timestamp_ms: Option<i64>,
        now_ms: i64,
    ) -> String {
        // Reading: any UTF-8 key, however long (README: an event's identifier over 512 bytes
        // is still suppressed).
        let Some(user) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            return "bad_key".to_owned();
        };
        let record_time = kafka_timestamp_ms.unwrap_or(now_ms);
        let request = privacy::read(value, record_time);
        let label = match &request {
            privacy::Request::Rejected(reason) => format!("rejected {reason}"),
            _ => "applied".to_owned(),
        };
        self.privacy
            .entry(user.to_owned())
            .or_default()
            .push((request, record_time));
        label
    }

    fn is_suppressed(&self, id: Option<&str>, event_time: i64) -> bool {
        id.and_then(|id| self.privacy.get(id))
            .is_some_and(|requests| privacy::suppressed(requests, event_time))
    }

    /// Applies a prepared record.
    pub fn commit(&mut self, pending: Pending) -> RecordOutcome {
        if let Some((user, arrival)) = pending.record {
            self.records.entry(user).or_default().push(arrival);
        }
        pending.outcome
    }

    fn timeline(&self, id: Option<&str>) -> Option<Timeline> {
        id.map(|id| {
            if id.len() > MAX_IDENTIFIER_BYTES {
                // README: "an event carrying such an identifier is judged as if it had a
                // malformed record".
                return Timeline::replay(&[Arrival {
                    meaning: Meaning::Malformed("key_too_long"),
                    record_time: 0,
                    now: 0,
                }]);
            }
            Timeline::replay(self.records.get(id).map_or(&[][..], Vec::as_slice))
        })
    }

    /// An event (its value as on the topic, `None` for null) is judged at `now_ms`.
    pub fn event(
        &self,
        value: Option<&[u8]>,
        kafka_timestamp_ms: Option<i64>,
        now_ms: i64,
    ) -> (Judgement, Trace) {
        let mut trace = Trace::default();
        self.seen.set(Trace::default());
        let event = match event::read(value, &self.config) {
            Ok(event) => event,
            Err(reason) => return (Judgement::DeadLetter(reason), trace),
        };
        trace.rudderstack_stamp = event.rudderstack;
        trace.alias_in_stamp = event.alias_named;
        let time = self.event_time(event.timestamp_ms, kafka_timestamp_ms, now_ms);
        trace.time_not_timestamp = event.timestamp_ms != Some(time);
        trace.older_than_window = event.timestamp_ms.is_some_and(|t| {
            kafka_timestamp_ms.unwrap_or(now_ms) - t > self.config.history_window_ms
        });
        let user = self.timeline(event.user_id.as_deref());
        let anonymous = self.timeline(event.anonymous_id.as_deref());
        let (window, max_changes) = (
            self.config.history_window_ms,
            self.config.history_max_changes,
        );
        for timeline in [&user, &anonymous].into_iter().flatten() {
            trace.evicted_by =
                trace
                    .evicted_by
                    .or(timeline.evicted_by(window, max_changes, self.swept_ms));
            trace.failed_closed |= matches!(timeline.now(), Now::FailedClosed);
        }
        let now = self.sources(person(now_of(&user), now_of(&anonymous)), &event);
        let swept = self.swept_ms;
        let user_then = user
            .as_ref()
            .map(|t| t.at(time, window, max_changes, swept));
        let anonymous_then = anonymous
            .as_ref()
            .map(|t| t.at(time, window, max_changes, swept));
        // Reading: when both identifiers have several candidates, every pairing must allow.
        let then: Vec<Sources> = match (&user_then, &anonymous_then) {
            (Some(At::Unknown), _) | (_, Some(At::Unknown)) => {
                trace.unknown_then = true;
                vec![Sources::Unknown]
            }
            _ => {
                let (us, anons) = (candidates(&user_then), candidates(&anonymous_then));
                trace.same_millisecond = us.len() > 1 || anons.len() > 1;
                let mut all = Vec::new();
                for u in &us {
                    for a in &anons {
                        all.push(self.sources(person(*u, *a), &event));
                    }
                }
                all
            }
        };
        // README, "Privacy requests": checked first, for every destination.
        let suppressed = self.is_suppressed(event.user_id.as_deref(), time)
            || self.is_suppressed(event.anonymous_id.as_deref(), time);
        trace.suppressed = suppressed;
        // Suppressed only because the event is dated within a suppression since lifted.
        trace.dated_in_lifted = suppressed
            && ![event.user_id.as_deref(), event.anonymous_id.as_deref()]
                .into_iter()
                .any(|id| self.is_suppressed(id, i64::MAX));
        let verdicts = self
            .config
            .destinations
            .iter()
            .map(|dest| {
                if suppressed {
                    return Verdict::Drop("suppressed");
                }
                let verdict = judge(dest, &event.integrations, &now, &then);
                let now_only = judge(dest, &event.integrations, &now, &[]);
                trace.then_dropped |= now_only == Verdict::Deliver && verdict != now_only;
                trace.channel_delivered |= dest.channel.is_some() && verdict == Verdict::Deliver;
                verdict
            })
            .collect();
        let seen = self.seen.get();
        trace.gpc_withheld = seen.gpc_withheld;
        trace.default_granted = seen.default_granted;
        trace.jurisdiction_of_state = seen.jurisdiction_of_state;
        trace.jurisdiction_of_location = seen.jurisdiction_of_location;
        (Judgement::Judged(verdicts), trace)
    }

    /// What the person of each pair of identifiers has stored now.
    pub fn persons_now(&self, pairs: &[(Option<String>, Option<String>)]) -> Vec<Stored> {
        let timelines: BTreeMap<&str, Timeline> = pairs
            .iter()
            .flat_map(|(u, a)| [u, a])
            .flatten()
            .map(|id| (id.as_str(), self.timeline(Some(id)).expect("an identifier")))
            .collect();
        let now = |id: &Option<String>| {
            id.as_ref()
                .and_then(|id| match timelines[id.as_str()].now() {
                    Now::Absent => None,
                    Now::FailedClosed => Some(Person::FailedClosed),
                    Now::State(state) => Some(Person::State(state)),
                })
        };
        pairs
            .iter()
            .map(|(u, a)| match person(now(u), now(a))? {
                Person::FailedClosed => Some(Rc::default()),
                Person::State(state) => Some(Rc::clone(&state.grants)),
            })
            .collect()
    }

    /// Whether an event (without `integrations`) whose person has stored `before` (see
    /// [`Model::persons_now`]) is delivered somewhere by the consent stored now, and would
    /// not be if the person had stored `after`: the first such stamp (an index into
    /// `stamps`), `when_missing = "allow"` or not, destination (an index), and its verdict
    /// after.
    pub fn first_narrowed(
        &self,
        before: &Stored,
        after: &Stored,
        stamps: &[Option<BTreeSet<String>>],
    ) -> Option<(usize, bool, usize, Verdict)> {
        let state = |person: &Stored| {
            person.as_ref().map(|grants| State {
                grants: Rc::clone(grants),
                at: 0,
            })
        };
        let (before, after) = (state(before), state(after));
        // Every event the person may send: any stamp, with or without GPC, from any
        // jurisdiction's location or none.
        let mut locations: Vec<Option<String>> = vec![None];
        locations.extend(
            self.config
                .jurisdictions
                .iter()
                .map(|j| Some(j.name.clone())),
        );
        for (i, stamp) in stamps.iter().enumerate() {
            for gpc in [false, true] {
                for location in &locations {
                    let event = event::Event {
                        user_id: None,
                        anonymous_id: None,
                        timestamp_ms: None,
                        stamp: stamp.clone(),
                        integrations: Vec::new(),
                        rudderstack: false,
                        alias_named: false,
                        gpc: gpc && !self.config.jurisdictions.is_empty(),
                        jurisdiction: location.clone(),
                    };
                    let was = self.sources(before.as_ref().map(Person::State), &event);
                    let is = self.sources(after.as_ref().map(Person::State), &event);
                    if was == is {
                        continue;
                    }
                    for allow in [false, true] {
                        // Without jurisdictions a user with no source gets all or nothing.
                        let defaults = |sources: Sources| match sources {
                            Sources::Missing(_) if self.config.jurisdictions.is_empty() => {
                                Sources::Missing(if allow {
                                    self.config.categories.iter().cloned().collect()
                                } else {
                                    BTreeSet::new()
                                })
                            }
                            other => other,
                        };
                        let (was, is) = (defaults(was.clone()), defaults(is.clone()));
                        for (d, dest) in self.config.destinations.iter().enumerate() {
                            let verdict = judge(dest, &[], &is, &[]);
                            if judge(dest, &[], &was, &[]) == Verdict::Deliver
                                && verdict != Verdict::Deliver
                            {
                                return Some((i, allow, d, verdict));
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// The consent sources of an event for one person's state (README, "The decision" and
    /// "Jurisdictions"): the jurisdiction is the state's, else the event's location's, else
    /// `consent.default_jurisdiction`; a GPC signal (the event's or the state's) denies that
    /// jurisdiction's `gpc_denies`; with no source, the jurisdiction's default (opt-in:
    /// nothing; opt-out: `granted_by_default`), or without jurisdictions `when_missing`.
    fn sources(&self, person: Option<Person<'_>>, event: &event::Event<'_>) -> Sources {
        let config = &self.config;
        let state = match person {
            Some(Person::State(state)) => Some(&state.grants),
            _ => None,
        };
        let fact = |prefix: &str| {
            state.and_then(|grants| {
                grants
                    .iter()
                    .find_map(|g| g.strip_prefix(prefix).map(str::to_owned))
            })
        };
        let mut seen = self.seen.get();
        let jurisdiction = if config.jurisdictions.is_empty() {
            None
        } else {
            let of_state = fact(JURISDICTION_FACT);
            seen.jurisdiction_of_state |= of_state.is_some();
            seen.jurisdiction_of_location |= of_state.is_none() && event.jurisdiction.is_some();
            of_state
                .or_else(|| event.jurisdiction.clone())
                .or_else(|| config.default_jurisdiction.clone())
                .and_then(|name| config.jurisdictions.iter().find(|j| j.name == name))
        };
        let gpc = event.gpc || state.is_some_and(|grants| grants.contains(GPC_FACT));
        let withheld: BTreeSet<String> = match jurisdiction {
            Some(j) if gpc => j.gpc_denies.iter().cloned().collect(),
            _ => BTreeSet::new(),
        };
        let mut without = |set: BTreeSet<String>| -> BTreeSet<String> {
            seen.gpc_withheld |= set.iter().any(|c| withheld.contains(c));
            set.into_iter().filter(|c| !withheld.contains(c)).collect()
        };
        match combined(person, event.stamp.as_ref()) {
            Sources::Missing(_) => {
                let defaults: BTreeSet<String> = if config.jurisdictions.is_empty() {
                    if config.when_missing_allow {
                        config.categories.iter().cloned().collect()
                    } else {
                        BTreeSet::new()
                    }
                } else {
                    jurisdiction
                        .filter(|j| j.opt_out)
                        .map(|j| j.granted_by_default.iter().cloned().collect())
                        .unwrap_or_default()
                };
                let defaults = without(defaults);
                seen.default_granted |= !config.jurisdictions.is_empty() && !defaults.is_empty();
                self.seen.set(seen);
                Sources::Missing(defaults)
            }
            Sources::Granted(granted) => {
                let granted = without(granted);
                self.seen.set(seen);
                Sources::Granted(granted)
            }
            Sources::Unknown => Sources::Unknown,
        }
    }

    /// "The event's time is its `timestamp` field (RFC 3339), else the record's Kafka
    /// timestamp": later than the record timestamp is capped at it; an earlier one is taken as
    /// it is, however old. "A record without a Kafka timestamp has the time it is judged in
    /// its place."
    fn event_time(&self, timestamp: Option<i64>, record: Option<i64>, now: i64) -> i64 {
        let record = record.unwrap_or(now);
        timestamp.map_or(record, |t| t.min(record))
    }
}

fn now_of(timeline: &Option<Timeline>) -> Option<Person<'_>> {
    match timeline.as_ref()?.now() {
        Now::Absent => None,
        Now::FailedClosed => Some(Person::FailedClosed),
        Now::State(state) => Some(Person::State(state)),
    }
}

/// The states an identifier may have had at the event's time (`None`: it had none).
fn candidates<'a>(at: &Option<At<'a>>) -> Vec<Option<Person<'a>>> {
    match at {
        None | Some(At::Absent) => vec![None],
        Some(At::FailedClosed) => vec![Some(Person::FailedClosed)],
        Some(At::Known(states)) => states.iter().map(|s| Some(Person::State(s))).collect(),
        Some(At::Unknown) => unreachable!("unknown is judged before pairing"),
    }
}

/// "The newer (by `updatedAt`) of the states stored for the event's `userId` and for its
/// `anonymousId`; the `userId` state wins a tie", a failed-closed one "newer than any state".
fn person<'a>(user: Option<Person<'a>>, anonymous: Option<Person<'a>>) -> Option<Person<'a>> {
    match (user, anonymous) {
        (Some(Person::FailedClosed), _) | (_, Some(Person::FailedClosed)) => {
            Some(Person::FailedClosed)
        }
        (Some(Person::State(u)), Some(Person::State(a))) if a.at > u.at => Some(Person::State(a)),
        (Some(u), _) => Some(u),
        (None, a) => a,
    }
}

/// "A category is granted only if at least one source is present and every present source
/// has it `true`."
fn combined(person: Option<Person<'_>>, stamp: Option<&BTreeSet<String>>) -> Sources {
    let stored = person.map(|p| match p {
        Person::FailedClosed => BTreeSet::new(),
        Person::State(state) => (*state.grants).clone(),
    });
    // README, "Channel subscriptions": only a stored state says what the user is
    // subscribed on; a stamp says nothing about it.
    match (stored, stamp) {
        (None, None) => Sources::Missing(BTreeSet::new()),
        (Some(granted), None) => Sources::Granted(granted),
        (None, Some(stamp)) => Sources::Granted(stamp.clone()),
        (Some(granted), Some(stamp)) => Sources::Granted(
            granted
                .iter()
                .filter(|c| stamp.contains(*c) || c.starts_with('\u{0}'))
                .cloned()
                .collect(),
        ),
    }
}

/// The decision table for one destination: steps 2 and 3, then steps 4 and 5 with the
/// consent now and then with each candidate at the event's time; the first failing check
/// gives the reason.
fn judge(
    dest: &Destination,
    integrations: &[(Cow<'_, str>, Json<'_>)],
    now: &Sources,
    then: &[Sources],
) -> Verdict {
    let value = |name: &str| integrations.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let off = dest
        .integration_names
        .iter()
        .any(|n| value(n) == Some(&Json::Bool(false)));
    let on = dest
        .integration_names
        .iter()
        .any(|n| matches!(value(n), Some(Json::Bool(true) | Json::Object(_))));
    if off || (value("All") == Some(&Json::Bool(false)) && !on) {
        return Verdict::Drop("integrations");
    }
    if dest.categories.is_empty() && dest.channel.is_none() {
        return Verdict::Deliver;
    }
    // Now first, its consent check and then its channel check; then the states that may
    // have been in force at the event's time. Reading: when several may have been, a check
    // of consent that fails is reported before a channel check that fails.
    for stage in [Stage::Consent, Stage::Channel] {
        if let Some(reason) = fails(dest, now, stage) {
            return Verdict::Drop(reason);
        }
    }
    for stage in [Stage::Consent, Stage::Channel] {
        for sources in then {
            if let Some(reason) = fails(dest, sources, stage) {
                return Verdict::Drop(reason);
            }
        }
    }
    Verdict::Deliver
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Steps 4 and 5: a consent source, and the destination's categories.
    Consent,
    /// The destination's `channel`.
    Channel,
}

/// The reason one check of a destination fails with these sources, if it does.
fn fails(dest: &Destination, sources: &Sources, stage: Stage) -> Option<&'static str> {
    let channel = dest.channel.as_deref().map(subscribed);
    let allows = |granted: &BTreeSet<String>| {
        let has = |c: &String| granted.contains(c);
        if dest.categories.is_empty() {
            true
        } else if dest.match_any {
            dest.categories.iter().any(has)
        } else {
            dest.categories.iter().all(has)
        }
    };
    match (stage, sources) {
        (_, Sources::Unknown) => Some("no_consent"),
        (Stage::Consent, Sources::Missing(defaults)) => (!allows(defaults)).then_some("no_consent"),
        (Stage::Channel, Sources::Missing(_)) => channel.is_some().then_some("unsubscribed"),
        (Stage::Consent, Sources::Granted(granted)) => (!allows(granted)).then_some("denied"),
        (Stage::Channel, Sources::Granted(granted)) => channel
            .is_some_and(|c| !granted.contains(&c))
            .then_some("unsubscribed"),
    }
}
