//! `consent-enforcer explain`: what the service would do with one event, and why, judged by
//! the code the service judges with ([`Verdicts`], [`Law`], the parsers). The states given
//! on the command line are applied to a consent table as if read from the consent topic at
//! the time of judging; the explanation adds, for each destination, what each source says
//! about each category it needs.

mod render;

use std::fmt;

use crate::config::Config;
use crate::consent::record::{read_value, Encoding};
use crate::consent::{ConsentTable, Rejection};
use crate::decision::{
    event_time_ms, person_state, DropReason, Grants, Law, LawApplied, Rule, Verdicts,
};
use crate::event::{self, EventView};
use crate::privacy::{read_request, PrivacyRejection};
use crate::vocabulary::{CategorySet, Vocabulary};

pub use render::{render_json, render_text};

/// What `explain` is asked about.
pub struct Question<'a> {
    pub event: &'a [u8],
    /// The consent record value of the event's `userId`, and of its `anonymousId`.
    pub state: Option<&'a [u8]>,
    pub anonymous_state: Option<&'a [u8]>,
    /// A privacy request keyed by the event's `userId` (else its `anonymousId`).
    pub request: Option<&'a [u8]>,
    /// The time of judging (`--at`), Unix milliseconds; the event is taken to be read then.
    pub at_ms: i64,
}

#[derive(Debug)]
pub enum ExplainError {
    /// `--state` without a `userId` in the event, or `--anonymous-state` without an
    /// `anonymousId`.
    NoIdentifier(&'static str),
    /// A state file is not a valid consent record.
    BadState(&'static str, Rejection),
    /// The request file is not a valid privacy request.
    BadRequest(PrivacyRejection),
}

impl fmt::Display for ExplainError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ExplainError::NoIdentifier(flag) => write!(
                f,
                "{flag}: the event has no {} to apply it to",
                match *flag {
                    "--state" => "userId",
                    "--request" => "userId or anonymousId",
                    _ => "anonymousId",
                }
            ),
            ExplainError::BadRequest(reason) => write!(
                f,
                "--request: not a valid privacy request ({}): the service would suppress the user",
                reason.as_str()
            ),
            ExplainError::BadState(flag, reason) => write!(
                f,
                "{flag}: not a valid consent record ({}): the service would fail this identifier closed",
                reason.as_str()
            ),
        }
    }
}

impl std::error::Error for ExplainError {}

/// The service's rules, built from one config.
pub struct Explainer {
    config: Config,
    vocabulary: Vocabulary,
    rules: Vec<Rule>,
    law: Law,
}

/// Everything `explain` prints.
#[derive(Debug)]
pub enum Explanation {
    /// The event goes to the dead-letter topic with this reason.
    DeadLetter(&'static str),
    Judged(Box<Judged>),
}

#[derive(Debug)]
pub struct Judged {
    pub at_ms: i64,
    pub event_time_ms: i64,
    /// The event's `timestamp`, when it has one.
    pub timestamp_ms: Option<i64>,
    pub has_user_id: bool,
    pub has_anonymous_id: bool,
    /// Which identifier's state is the person's now (`userId` or `anonymousId`).
    pub person_now: Option<&'static str>,
    pub stamp: Option<Vec<String>>,
    pub consent_management: Option<Vec<String>>,
    pub law: LawNames,
    /// `None`: the consent at the event's time is the consent now. Else whether it is known.
    pub then_known: Option<bool>,
    /// An identifier of the event is suppressed by a privacy request.
    pub suppressed: bool,
    pub destinations: Vec<DestinationVerdict>,
}

/// [`LawApplied`] with names.
#[derive(Debug)]
pub struct LawNames {
    pub jurisdiction: Option<(String, &'static str)>,
    pub gpc: Option<&'static str>,
    pub withheld: Vec<String>,
    pub defaults: Vec<String>,
    pub jurisdictions_configured: bool,
}

#[derive(Debug)]
pub struct DestinationVerdict {
    pub name: String,
    pub topic: String,
    pub verdict: Result<(), DropReason>,
    pub categories: Vec<CategoryExplained>,
    pub channel: Option<(String, bool)>,
}

/// What each source says of one category a destination needs.
#[derive(Debug)]
pub struct CategoryExplained {
    pub name: String,
    /// The person's stored state now: granted or not; `None` without a state.
    pub state: Option<bool>,
    pub stamp: Option<bool>,
    pub consent_management: Option<bool>,
    /// With no source: whether the default grants it.
    pub default: Option<bool>,
    pub gpc_withheld: bool,
}

impl Explainer {
    /// The config must have been validated.
    pub fn new(config: &Config) -> Explainer {
        let mut vocabulary = Vocabulary::from_config(config);
        let rules = Rule::from_config(config, &mut vocabulary);
        let law = Law::from_config(config, &vocabulary);
        Explainer {
            config: config.clone(),
            vocabulary,
            rules,
            law,
        }
    }

    /// A table holding the given states, read as the consent topic's records at `at_ms`.
    pub fn table(&self, question: &Question<'_>) -> Result<ConsentTable, ExplainError> {
        let consent = &self.config.consent;
        let mut table = ConsentTable::new(
            consent.history_window.as_millis(),
            consent.history_max_changes,
        );
        // An event that does not parse has no identifiers; its dead letter is explained.
        let Ok(view) = event::parse(Some(question.event), usize::MAX, &self.vocabulary) else {
            return Ok(table);
        };
        for (flag, value, id) in [
            ("--state", question.state, view.user_id.as_deref()),
            (
                "--anonymous-state",
                question.anonymous_state,
                view.anonymous_id.as_deref(),
            ),
        ] {
            let Some(value) = value else { continue };
            let id = id.ok_or(ExplainError::NoIdentifier(flag))?;
            let encoding = Encoding::of(consent.format, None, Some(value));
            let update = read_value(Some(value), encoding, question.at_ms, &self.vocabulary).update;
            if let Err(reason) = update {
                return Err(ExplainError::BadState(flag, reason));
            }
            table.apply_record(id, update, question.at_ms, question.at_ms);
        }
        if let Some(value) = question.request {
            let id = view
                .user_id
                .as_deref()
                .or(view.anonymous_id.as_deref())
                .ok_or(ExplainError::NoIdentifier("--request"))?;
            let format = self
                .config
                .privacy
                .as_ref()
                .map_or(consent.format, |privacy| privacy.format);
            let encoding = Encoding::of(format, None, Some(value));
            let update = read_request(Some(value), encoding, question.at_ms);
            if let Err(reason) = update {
                return Err(ExplainError::BadRequest(reason));
            }
            table.suppressions_mut().apply(id, update, question.at_ms);
        }
        Ok(table)
    }

    /// What the service does with the event given this table, read at `at_ms` (its Kafka
    /// timestamp `record_time_ms`, which the CLI takes to be `at_ms` too).
    pub fn explain(
        &self,
        table: &ConsentTable,
        event: &[u8],
        record_time_ms: Option<i64>,
        at_ms: i64,
    ) -> Explanation {
        let view = match event::parse(
            Some(event),
            self.config.input.max_event_bytes,
            &self.vocabulary,
        ) {
            Ok(view) => view,
            Err(reason) => return Explanation::DeadLetter(reason.as_str()),
        };
        let time = event_time_ms(view.timestamp_ms, record_time_ms, at_ms);
        let verdicts = Verdicts::new(table, &view, time, &self.law);
        let lookup = |id: Option<&str>| id.and_then(|id| table.get(id));
        let (user, anonymous) = (
            lookup(view.user_id.as_deref()),
            lookup(view.anonymous_id.as_deref()),
        );
        let person = person_state(user, anonymous);
        let person_now = match (user, anonymous, person) {
            (_, _, None) => None,
            (Some(u), _, Some(p)) if u == p => Some("userId"),
            _ => Some("anonymousId"),
        };
        let applied = self.law.describe(person, &view);
        let destinations = self
            .rules
            .iter()
            .zip(&self.config.destinations)
            .map(|(rule, dest)| DestinationVerdict {
                name: dest.name.clone(),
                topic: dest.topic.clone(),
                verdict: verdicts.decide(&view, rule),
                categories: self.categories(rule, person.map(|p| p.granted), &view, &applied),
                channel: dest.channel.clone().map(|channel| {
                    let subscribed = person.is_some_and(|p| p.granted.is_superset(rule.channel));
                    (channel, subscribed)
                }),
            })
            .collect();
        let then_known = verdicts.then().map(|then| !then.contains(&Grants::Unknown));
        Explanation::Judged(Box::new(Judged {
            at_ms,
            event_time_ms: time,
            timestamp_ms: view.timestamp_ms,
            has_user_id: view.user_id.is_some(),
            has_anonymous_id: view.anonymous_id.is_some(),
            person_now,
            stamp: view.stamp.map(|set| self.names(set)),
            consent_management: view.managed.map(|set| self.names(set)),
            law: self.law_names(&applied),
            then_known,
            suppressed: verdicts.suppressed(),
            destinations,
        }))
    }

    fn categories(
        &self,
        rule: &Rule,
        stored: Option<CategorySet>,
        view: &EventView<'_>,
        applied: &LawApplied,
    ) -> Vec<CategoryExplained> {
        let no_source = stored.is_none() && view.stamps().is_none();
        (0..self.vocabulary.bit_count())
            .filter(|&bit| rule.categories.contains(bit))
            .map(|bit| CategoryExplained {
                name: self.vocabulary.bit_name(bit).to_owned(),
                state: stored.map(|set| set.contains(bit)),
                stamp: view.stamp.map(|set| set.contains(bit)),
                consent_management: view.managed.map(|set| set.contains(bit)),
                default: no_source.then(|| applied.defaults.contains(bit)),
                gpc_withheld: applied.withheld.contains(bit),
            })
            .collect()
    }

    fn names(&self, set: CategorySet) -> Vec<String> {
        (0..self.vocabulary.bit_count())
            .filter(|&bit| set.contains(bit) && self.vocabulary.is_category(bit))
            .map(|bit| self.vocabulary.bit_name(bit).to_owned())
            .collect()
    }

    fn law_names(&self, applied: &LawApplied) -> LawNames {
        use crate::decision::Origin;
        let origin = |origin: Origin| match origin {
            Origin::State => "the stored state",
            Origin::Location => "the event's context.location",
            Origin::Default => "consent.default_jurisdiction",
        };
        LawNames {
            jurisdiction: applied
                .jurisdiction
                .map(|(bit, from)| (self.vocabulary.bit_name(bit).to_owned(), origin(from))),
            gpc: applied.gpc.map(|from| match from {
                Origin::State => "the stored state",
                _ => "the event's context.gpc",
            }),
            withheld: self.names(applied.withheld),
            defaults: self.names(applied.defaults),
            jurisdictions_configured: !self.config.jurisdictions.is_empty(),
        }
    }
}
