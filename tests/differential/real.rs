//! The real code, composed as the service composes it (`Applier::apply` in
//! src/consent/follower.rs, `Judge::event` in src/pipeline/judge.rs), answering in the
//! model's terms so that the two can be compared.

use std::rc::Rc;

use consent_enforcer::config::Config;
use consent_enforcer::consent::record::{parse_key, parse_value, Encoding};
use consent_enforcer::consent::suppressions::PrivacyOutcome;
use consent_enforcer::consent::{self, ConsentTable};
use consent_enforcer::decision::{event_time_ms, Law, Rule, Verdicts};
use consent_enforcer::event;
use consent_enforcer::explain::{Explainer, Explanation};
use consent_enforcer::privacy::read_request;
use consent_enforcer::vocabulary::{CategorySet, Vocabulary};

use crate::model::{Judgement, RecordOutcome, Verdict};

pub struct Real {
    config: Rc<Config>,
    vocabulary: Vocabulary,
    rules: Vec<Rule>,
    law: Law,
    explainer: Explainer,
    table: ConsentTable,
}

/// The config as the service loads it.
pub fn config(toml: &str) -> Config {
    let config = Config::parse(toml, "gen").expect("the generated config parses");
    config.validate().expect("the generated config is valid");
    config
}

impl Real {
    pub fn new(config: Rc<Config>) -> Real {
        let mut vocabulary = Vocabulary::from_config(&config);
        let rules = Rule::from_config(&config, &mut vocabulary);
        let law = Law::from_config(&config, &vocabulary);
        let explainer = Explainer::new(&config);
        let table = ConsentTable::new(
            config.consent.history_window.as_millis(),
            config.consent.history_max_changes,
        );
        Real {
            config,
            vocabulary,
            rules,
            law,
            explainer,
            table,
        }
    }

    /// Applies a consent record; also answers what `may_narrow` said before it was applied
    /// (`None` for a record without a usable key).
    pub fn record(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        kafka_timestamp_ms: Option<i64>,
        now_ms: i64,
    ) -> (Option<bool>, RecordOutcome) {
        let user = match parse_key(key) {
            Ok(user) => user,
            Err(consent::Rejection::KeyTooLong) => return (None, RecordOutcome::KeyTooLong),
            Err(_) => return (None, RecordOutcome::BadKey),
        };
        let record_time_ms = kafka_timestamp_ms.unwrap_or(now_ms);
        let update = parse_value(value, record_time_ms, &self.vocabulary);
        let all = ConsentTable::widest(&self.config, &self.vocabulary);
        let may_narrow = self.table.may_narrow(user, &update, record_time_ms, all);
        let outcome = match self
            .table
            .apply_record(user, update, record_time_ms, now_ms)
        {
            consent::RecordOutcome::Stored { future_dated } => {
                RecordOutcome::Stored { future_dated }
            }
            consent::RecordOutcome::Removed => RecordOutcome::Removed,
            consent::RecordOutcome::Stale { stored } if stored.is_failed_closed() => {
                RecordOutcome::StaleWhileFailed
            }
            consent::RecordOutcome::Stale { stored } => RecordOutcome::Stale {
                republished: self.names(stored.granted),
                at: stored.updated_at_ms,
            },
            consent::RecordOutcome::FailedClosed(reason) => {
                RecordOutcome::FailedClosed(reason.as_str())
            }
        };
        (Some(may_narrow), outcome)
    }

    /// Applies a privacy record as the privacy follower does (to the table's suppressions),
    /// answering in the model's terms.
    pub fn privacy(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        kafka_timestamp_ms: Option<i64>,
        now_ms: i64,
    ) -> String {
        // As the privacy follower reads keys: any UTF-8, however long.
        let Some(user) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            return "bad_key".to_owned();
        };
        let record_time_ms = kafka_timestamp_ms.unwrap_or(now_ms);
        let update = read_request(value, Encoding::Json, record_time_ms);
        match self
            .table
            .suppressions_mut()
            .apply(user, update, record_time_ms)
        {
            PrivacyOutcome::FailedClosed(reason) => format!("rejected {}", reason.as_str()),
            _ => "applied".to_owned(),
        }
    }

    /// The follower's periodic sweep of the history, at `now_ms`.
    pub fn sweep(&mut self, now_ms: i64) {
        self.table.sweep(now_ms);
    }

    pub fn event(
        &self,
        value: Option<&[u8]>,
        kafka_timestamp_ms: Option<i64>,
        now_ms: i64,
    ) -> Judgement {
        let view = match event::parse(value, self.config.input.max_event_bytes, &self.vocabulary) {
            Ok(view) => view,
            Err(reason) => return Judgement::DeadLetter(reason.as_str()),
        };
        let time = event_time_ms(view.timestamp_ms, kafka_timestamp_ms, now_ms);
        let verdicts = Verdicts::new(&self.table, &view, time, &self.law);
        let judged: Vec<Verdict> = self
            .rules
            .iter()
            .map(|rule| match verdicts.decide(&view, rule) {
                Ok(()) => Verdict::Deliver,
                Err(reason) => Verdict::Drop(reason.as_str()),
            })
            .collect();
        // `explain` must say what the service does.
        let bytes = value.unwrap_or_default();
        match self
            .explainer
            .explain(&self.table, bytes, kafka_timestamp_ms, now_ms)
        {
            Explanation::Judged(explained) => {
                let said: Vec<Verdict> = explained
                    .destinations
                    .iter()
                    .map(|d| match d.verdict {
                        Ok(()) => Verdict::Deliver,
                        Err(reason) => Verdict::Drop(reason.as_str()),
                    })
                    .collect();
                assert_eq!(said, judged, "explain disagrees with the service");
            }
            Explanation::DeadLetter(reason) => {
                panic!("explain dead-letters ({reason}) an event the service judged")
            }
        }
        Judgement::Judged(judged)
    }

    /// The configured categories in `set`, in config order (the model's order too).
    fn names(&self, set: CategorySet) -> Vec<String> {
        (0..self.vocabulary.bit_count())
            .filter(|&i| set.contains(i) && self.vocabulary.is_category(i))
            .map(|i| self.vocabulary.bit_name(i).to_owned())
            .collect()
    }
}
