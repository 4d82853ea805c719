//! The law an event is judged under: its jurisdiction (from the person's stored state, else
//! the event's `context.location`, else `consent.default_jurisdiction`), what a user with no
//! consent source gets there (`opt-in`: nothing; `opt-out`: `granted_by_default`), and what a
//! Global Privacy Control signal denies there (`gpc_denies`). Without `[[jurisdiction]]`, a
//! user with no source gets what `consent.when_missing` says, and GPC changes nothing.

use super::Grants;
use crate::config::{Config, LegalModel, WhenMissing};
use crate::consent::ConsentState;
use crate::event::EventView;
use crate::vocabulary::{CategorySet, Vocabulary};

#[derive(Debug, Clone)]
pub struct Law {
    /// The configured jurisdictions, by their bit.
    jurisdictions: Vec<(u8, Jurisdiction)>,
    default: Option<u8>,
    /// Without jurisdictions: what a user with no consent source is granted.
    when_missing: CategorySet,
    /// Bits only a stored state sets.
    state_only: CategorySet,
    gpc: Option<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Jurisdiction {
    by_default: CategorySet,
    gpc_denies: CategorySet,
}

impl Law {
    /// The config must have been validated, and `vocabulary` built from it.
    pub fn from_config(config: &Config, vocabulary: &Vocabulary) -> Law {
        let set = |names: &[String]| {
            let mut set = CategorySet::EMPTY;
            for bit in names.iter().filter_map(|name| vocabulary.category(name)) {
                set.insert(bit);
            }
            set
        };
        let jurisdictions = config
            .jurisdictions
            .iter()
            .filter_map(|j| {
                let bit = vocabulary.jurisdiction_named(&j.name)?;
                let by_default = match j.model {
                    LegalModel::OptIn => CategorySet::EMPTY,
                    LegalModel::OptOut => set(&j.granted_by_default),
                };
                Some((
                    bit,
                    Jurisdiction {
                        by_default,
                        gpc_denies: set(&j.gpc_denies),
                    },
                ))
            })
            .collect();
        let when_missing = match config.consent.when_missing() {
            WhenMissing::Allow => vocabulary.all_categories().without(vocabulary.channels()),
            WhenMissing::Deny => CategorySet::EMPTY,
        };
        Law {
            jurisdictions,
            default: config
                .consent
                .default_jurisdiction
                .as_deref()
                .and_then(|name| vocabulary.jurisdiction_named(name)),
            when_missing,
            state_only: vocabulary.state_only(),
            gpc: vocabulary.gpc(),
        }
    }

    /// The law of a config without jurisdictions (tests).
    pub fn when_missing(when_missing: WhenMissing, vocabulary: &Vocabulary) -> Law {
        Law {
            jurisdictions: Vec::new(),
            default: None,
            when_missing: match when_missing {
                WhenMissing::Allow => vocabulary.all_categories().without(vocabulary.channels()),
                WhenMissing::Deny => CategorySet::EMPTY,
            },
            state_only: vocabulary.state_only(),
            gpc: None,
        }
    }

    /// Combines the person's stored state (already the newer of the `userId` and
    /// `anonymousId` states) with the event's own stamps (already combined): a category is
    /// granted only if every present source grants it, and not if a GPC signal (the event's
    /// or the state's) denies it in the jurisdiction. Subscriptions, GPC and jurisdiction
    /// come from the stored state alone. With no source, the jurisdiction's default.
    pub fn grants(&self, stored: Option<ConsentState>, view: &EventView<'_>) -> Grants {
        let stored = stored.map(|state| state.granted);
        let jurisdiction = self.jurisdiction(stored, view);
        let gpc =
            view.gpc || stored.is_some_and(|bits| self.gpc.is_some_and(|gpc| bits.contains(gpc)));
        let withheld = match jurisdiction {
            Some(j) if gpc => j.gpc_denies,
            _ => CategorySet::EMPTY,
        };
        let stamps = view.stamps().map(|stamps| stamps.without(self.state_only));
        let granted = match (stored, stamps) {
            (None, None) => {
                let defaults = if self.jurisdictions.is_empty() {
                    self.when_missing
                } else {
                    jurisdiction.map_or(CategorySet::EMPTY, |j| j.by_default)
                };
                return Grants::Missing(defaults.without(withheld));
            }
            (Some(stored), None) => stored,
            (None, Some(stamps)) => stamps,
            (Some(stored), Some(stamps)) => stored.intersection(stamps.union(self.state_only)),
        };
        Grants::Granted(granted.without(withheld))
    }

    fn jurisdiction(
        &self,
        stored: Option<CategorySet>,
        view: &EventView<'_>,
    ) -> Option<Jurisdiction> {
        let (bit, _) = self.resolve(stored, view)?;
        self.jurisdictions
            .iter()
            .find(|(b, _)| *b == bit)
            .map(|(_, j)| *j)
    }

    /// The jurisdiction's bit, and where it came from.
    fn resolve(&self, stored: Option<CategorySet>, view: &EventView<'_>) -> Option<(u8, Origin)> {
        if self.jurisdictions.is_empty() {
            return None;
        }
        let of_state = stored.and_then(|bits| {
            self.jurisdictions
                .iter()
                .find(|(bit, _)| bits.contains(*bit))
                .map(|(bit, _)| *bit)
        });
        of_state
            .map(|bit| (bit, Origin::State))
            .or(view.location.map(|bit| (bit, Origin::Location)))
            .or(self.default.map(|bit| (bit, Origin::Default)))
    }

    /// What the law made of one person's state and the event, for `explain`: the same
    /// resolution [`Law::grants`] uses.
    pub fn describe(&self, stored: Option<ConsentState>, view: &EventView<'_>) -> LawApplied {
        let bits = stored.map(|state| state.granted);
        let jurisdiction = self.jurisdiction(bits, view);
        let state_gpc = bits.is_some_and(|b| self.gpc.is_some_and(|gpc| b.contains(gpc)));
        let gpc = if self.jurisdictions.is_empty() {
            None
        } else if view.gpc {
            Some(Origin::Location)
        } else if state_gpc {
            Some(Origin::State)
        } else {
            None
        };
        LawApplied {
            jurisdiction: self.resolve(bits, view),
            gpc,
            withheld: jurisdiction
                .filter(|_| gpc.is_some())
                .map_or(CategorySet::EMPTY, |j| j.gpc_denies),
            defaults: if self.jurisdictions.is_empty() {
                self.when_missing
            } else {
                jurisdiction.map_or(CategorySet::EMPTY, |j| j.by_default)
            },
        }
    }
}

/// Where the jurisdiction came from (for GPC, `Location` stands for the event's own
/// `context.gpc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    State,
    Location,
    Default,
}

/// The law as applied to one person's state and event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LawApplied {
    /// The jurisdiction's bit and where it came from.
    pub jurisdiction: Option<(u8, Origin)>,
    /// A GPC signal, from the event (`Location`) or the state.
    pub gpc: Option<Origin>,
    /// What the GPC signal denies.
    pub withheld: CategorySet,
    /// What a user with no consent source is granted (before GPC).
    pub defaults: CategorySet,
}

#[cfg(test)]
mod tests;
