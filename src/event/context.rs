//! The event's `context`: its consent stamps. Segment's `context.consent.categoryPreferences`
//! and RudderStack's `context.consentManagement` are each one consent source when present.

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::json::{
    seed_of_any_value, skip_bools_and_strings, skip_numbers_null_and_arrays, Flag, FlagSeed,
    GrantsSeed, KeySeed, Scope,
};
use crate::vocabulary::CategorySet;

/// What `context` says about consent.
#[derive(Debug, Default)]
pub(super) struct Context {
    pub(super) stamp: Option<CategorySet>,
    pub(super) managed: Option<CategorySet>,
    pub(super) gpc: bool,
    pub(super) location: Option<u8>,
}

pub(super) struct ContextSeed<'v>(pub(super) Scope<'v>);

seed_of_any_value!(ContextSeed<'_> => Context);

const CONTEXT_KEYS: [&str; 4] = ["consent", "consentManagement", "gpc", "location"];

impl<'de> Visitor<'de> for ContextSeed<'_> {
    type Value = Context;

    skip_numbers_null_and_arrays!(Context);
    skip_bools_and_strings!(Context);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Context, A::Error> {
        let scope = self.0;
        let mut context = Context::default();
        let mut seen = 0;
        while let Some(key) = map.next_key_seed(KeySeed(&CONTEXT_KEYS))? {
            match key {
                Some(0) => {
                    scope.see(&mut seen, 1);
                    context.stamp = map.next_value_seed(PathSeed {
                        scope,
                        path: &["categoryPreferences"],
                    })?;
                }
                Some(1) => {
                    scope.see(&mut seen, 2);
                    // Present whatever its shape; one that is not an object grants nothing.
                    context.managed = Some(
                        map.next_value_seed(ConsentManagementSeed(scope))?
                            .unwrap_or_default(),
                    );
                }
                // Read, and so checked for duplicates, only where the decision uses it: a
                // config without jurisdictions decides as it did before they existed.
                Some(2) if scope.vocabulary.has_jurisdictions() => {
                    scope.see(&mut seen, 4);
                    // Only JSON `true` is a signal.
                    context.gpc = map.next_value_seed(FlagSeed)? == Flag::True;
                }
                Some(3) if scope.vocabulary.has_jurisdictions() => {
                    scope.see(&mut seen, 8);
                    let place = map.next_value_seed(LocationSeed(scope))?;
                    context.location = scope
                        .vocabulary
                        .jurisdiction_at(place.country.as_deref(), place.region.as_deref());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(context)
    }
}

/// `context.location`'s `country` and `region`, when they are strings.
#[derive(Debug, Default)]
struct Place {
    country: Option<String>,
    region: Option<String>,
}

struct LocationSeed<'v>(Scope<'v>);

seed_of_any_value!(LocationSeed<'_> => Place);

const LOCATION_KEYS: [&str; 2] = ["country", "region"];

impl<'de> Visitor<'de> for LocationSeed<'_> {
    type Value = Place;

    skip_numbers_null_and_arrays!(Place);
    skip_bools_and_strings!(Place);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Place, A::Error> {
        let mut place = Place::default();
        let mut seen = 0;
        while let Some(key) = map.next_key_seed(KeySeed(&LOCATION_KEYS))? {
            match key {
                Some(0) => {
                    self.0.see(&mut seen, 1);
                    place.country = map.next_value_seed(StringSeed)?;
                }
                Some(1) => {
                    self.0.see(&mut seen, 2);
                    place.region = map.next_value_seed(StringSeed)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(place)
    }
}

/// A string value; any other is none.
pub(crate) struct StringSeed;

seed_of_any_value!(StringSeed => Option<String>);

impl<'de> Visitor<'de> for StringSeed {
    type Value = Option<String>;

    skip_numbers_null_and_arrays!(Option<String>);

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some(text.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        crate::json::skip_map(map)?;
        Ok(None)
    }
}

/// RudderStack's `consentManagement`: `allowedConsentIds` and `deniedConsentIds`, arrays of
/// CMP IDs (or category names). A category is granted only if an allowed ID maps to it and
/// no denied ID does. `provider` and `resolutionStrategy` do not change the decision: a
/// destination's `match` does what `resolutionStrategy` does in RudderStack.
struct ConsentManagementSeed<'v>(Scope<'v>);

seed_of_any_value!(ConsentManagementSeed<'_> => Option<CategorySet>);

const MANAGEMENT_KEYS: [&str; 2] = ["allowedConsentIds", "deniedConsentIds"];

impl<'de> Visitor<'de> for ConsentManagementSeed<'_> {
    type Value = Option<CategorySet>;

    skip_numbers_null_and_arrays!(Option<CategorySet>);
    skip_bools_and_strings!(Option<CategorySet>);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let scope = self.0;
        let (mut allowed, mut denied) = (CategorySet::EMPTY, CategorySet::EMPTY);
        let mut seen = 0;
        while let Some(key) = map.next_key_seed(KeySeed(&MANAGEMENT_KEYS))? {
            match key {
                Some(0) => {
                    scope.see(&mut seen, 1);
                    allowed = map.next_value_seed(ConsentIdsSeed(scope))?;
                }
                Some(1) => {
                    scope.see(&mut seen, 2);
                    denied = map.next_value_seed(ConsentIdsSeed(scope))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(allowed.without(denied)))
    }
}

/// An array of consent IDs, as the categories they map to. Entries that are not strings are
/// skipped; a value that is not an array names nothing.
struct ConsentIdsSeed<'v>(Scope<'v>);

seed_of_any_value!(ConsentIdsSeed<'_> => CategorySet);

impl<'de> Visitor<'de> for ConsentIdsSeed<'_> {
    type Value = CategorySet;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of consent IDs")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<CategorySet, E> {
        Ok(CategorySet::EMPTY)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<CategorySet, E> {
        Ok(CategorySet::EMPTY)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<CategorySet, E> {
        Ok(CategorySet::EMPTY)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<CategorySet, E> {
        Ok(CategorySet::EMPTY)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<CategorySet, E> {
        Ok(CategorySet::EMPTY)
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<CategorySet, E> {
        Ok(CategorySet::EMPTY)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CategorySet, A::Error> {
        crate::json::skip_map(map)?;
        Ok(CategorySet::EMPTY)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CategorySet, A::Error> {
        let scope = self.0;
        let mut set = CategorySet::EMPTY;
        while let Some(id) = seq.next_element_seed(ConsentIdSeed(scope))? {
            if let Some(bit) = id {
                set.insert(bit);
            }
        }
        Ok(set)
    }
}

/// One entry of a consent-ID array: the bit its name maps to.
struct ConsentIdSeed<'v>(Scope<'v>);

seed_of_any_value!(ConsentIdSeed<'_> => Option<u8>);

impl<'de> Visitor<'de> for ConsentIdSeed<'_> {
    type Value = Option<u8>;

    skip_numbers_null_and_arrays!(Option<u8>);

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Option<u8>, E> {
        Ok(None)
    }

    fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<Option<u8>, E> {
        let scope = self.0;
        match scope.vocabulary.category_name_of(id) {
            Some(name) => Ok(name.bit),
            None => {
                scope.unknown_names.set(scope.unknown_names.get() + 1);
                Ok(None)
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<u8>, A::Error> {
        crate::json::skip_map(map)?;
        Ok(None)
    }
}

/// Walks nested objects along `path` (below the current value) to a `categoryPreferences`
/// object. `None` when any step is missing or not an object; once the last step exists, the
/// stamp is present.
struct PathSeed<'v, 'p> {
    scope: Scope<'v>,
    path: &'p [&'static str],
}

seed_of_any_value!(PathSeed<'_, '_> => Option<CategorySet>);

impl<'de> Visitor<'de> for PathSeed<'_, '_> {
    type Value = Option<CategorySet>;

    skip_numbers_null_and_arrays!(Option<CategorySet>);
    skip_bools_and_strings!(Option<CategorySet>);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (step, rest) = match self.path.split_first() {
            Some(split) => split,
            None => return Ok(None),
        };
        let mut found = None;
        let mut seen = 0;
        while let Some(key) = map.next_key_seed(KeySeed(std::slice::from_ref(step)))? {
            if key.is_none() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.scope.see(&mut seen, 1);
            found = if rest.is_empty() {
                // A stamp that exists but is not an object is present and grants nothing.
                Some(
                    map.next_value_seed(GrantsSeed(self.scope))?
                        .unwrap_or_default(),
                )
            } else {
                map.next_value_seed(PathSeed {
                    scope: self.scope,
                    path: rest,
                })?
            };
        }
        Ok(found)
    }
}
