//! Guarantee 2's premise, checked in the model's terms: a record `may_narrow` lets through
//! without waiting for earlier writes must take nothing away from anyone now.

use std::collections::BTreeSet;

use crate::model::{Model, Stored};

/// Guarantee 2's premise: when `may_narrow` says a record takes nothing away, applying it
/// turns no "now" decision from deliver to drop, for an event of any pairing of identifiers
/// that includes the record's, with any stamp, under either `when_missing`.
pub struct NarrowingProbe {
    pairs: Vec<(Option<String>, Option<String>)>,
    stamps: Vec<Option<BTreeSet<String>>>,
}

impl NarrowingProbe {
    pub fn new(model: &Model, user: &[u8]) -> NarrowingProbe {
        let user = String::from_utf8(user.to_vec()).expect("a usable key is UTF-8");
        let mut others: Vec<Option<String>> = model.identifiers().into_iter().map(Some).collect();
        if !others.contains(&Some(user.clone())) {
            others.push(Some(user.clone()));
        }
        others.push(None);
        let pairs = others
            .into_iter()
            .flat_map(|other| {
                [
                    (Some(user.clone()), other.clone()),
                    (other, Some(user.clone())),
                ]
            })
            .collect();
        let categories = &model.config().categories;
        let mut stamps = vec![None];
        for bits in 0..1u32 << categories.len() {
            let stamp = (0..categories.len())
                .filter(|i| bits & (1 << i) != 0)
                .map(|i| categories[i].clone())
                .collect();
            stamps.push(Some(stamp));
        }
        NarrowingProbe { pairs, stamps }
    }

    /// What each pairing's person has stored now.
    pub fn persons(&self, model: &Model) -> Vec<Stored> {
        model.persons_now(&self.pairs)
    }

    /// `before`: [`NarrowingProbe::persons`] before the record was applied to the model.
    pub fn check(&self, model: &Model, before: &[Stored]) -> Result<(), String> {
        let mut seen: Vec<(&Stored, Stored)> = Vec::new();
        for ((pair, before), after) in self.pairs.iter().zip(before).zip(self.persons(model)) {
            // The "now" decision depends on nothing else the record could change.
            if *before == after || seen.iter().any(|(b, a)| *b == before && *a == after) {
                continue;
            }
            seen.push((before, after.clone()));
            if let Some((stamp, allow, dest, verdict)) =
                model.first_narrowed(before, &after, &self.stamps)
            {
                return Err(format!(
                    "applying it turned {}'s decision for an event of (userId, anonymousId) = \
                     {pair:?} with stamp {:?}, when_missing = {}, from deliver to {verdict:?} \
                     (the person's stored grants went from {before:?} to {after:?})",
                    model.config().destinations[dest].name,
                    self.stamps[stamp],
                    if allow { "allow" } else { "deny" }
                ));
            }
        }
        Ok(())
    }
}
