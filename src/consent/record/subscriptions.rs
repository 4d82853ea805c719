//! A state's `subscriptions`: channel name to status. Only `"subscribed"` (any case)
//! subscribes; any other status, or a value that is not an object, leaves the channel
//! unsubscribed (a channel destination then receives nothing: fail closed).

use serde::de::{IgnoredAny, MapAccess, Visitor};

use crate::json::{
    seed_of_any_value, skip_bools_and_strings, skip_numbers_null_and_arrays, NameSeed, Scope,
};
use crate::vocabulary::CategorySet;

pub(super) struct SubscriptionsSeed<'v>(pub(super) Scope<'v>);

seed_of_any_value!(SubscriptionsSeed<'_> => CategorySet);

impl<'de> Visitor<'de> for SubscriptionsSeed<'_> {
    type Value = CategorySet;

    skip_numbers_null_and_arrays!(CategorySet);
    skip_bools_and_strings!(CategorySet);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CategorySet, A::Error> {
        let scope = self.0;
        let mut subscribed = CategorySet::EMPTY;
        let mut seen = CategorySet::EMPTY;
        while let Some(key) = map.next_key_seed(NameSeed {
            lookup: |name: &str| scope.vocabulary.channel(name),
        })? {
            match key {
                Some(bit) => {
                    if seen.contains(bit) {
                        scope.duplicate.set(true);
                    }
                    seen.insert(bit);
                    if map.next_value_seed(StatusSeed)? {
                        subscribed.insert(bit);
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(subscribed)
    }
}

/// Whether a status is `subscribed`.
struct StatusSeed;

seed_of_any_value!(StatusSeed => bool);

impl<'de> Visitor<'de> for StatusSeed {
    type Value = bool;

    skip_numbers_null_and_arrays!(bool);

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E: serde::de::Error>(self, status: &str) -> Result<bool, E> {
        Ok(status.eq_ignore_ascii_case("subscribed"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        crate::json::skip_map(map)?;
        Ok(false)
    }
}
