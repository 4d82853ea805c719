//! Overriding stale consent records: the newer state is written again after a stale record,
//! in the stale record's partition, so that compaction (which keeps a key's last record by
//! offset) cannot bring the stale one back. One instance writes each override (see
//! [`ConsentEffects::republishes_for`]); it is a copy of the newer record when that can be
//! read back ([`Lookback`]), else the table's state re-encoded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics::Counter;

use super::follower::ConsentEffects;
use super::lookback::{CopiedRecord, Lookback, Lookup};
use super::ConsentState;

/// Beyond this many lookups waiting (a flood of stale records), overrides are re-encoded
/// at once rather than queued behind them.
const MAX_PENDING_LOOKUPS: usize = 1_000;

/// How long an override left to the instance that owns its partition may stay unwritten (not
/// read back) before this one writes it too: an owner may be stuck, gone without a successor
/// yet, or (its input topic's partition count having changed since it started) count owners
/// differently. A second override is harmless; none at all lets compaction bring the stale
/// record back.
pub const OWNER_GRACE: Duration = Duration::from_secs(60);

/// What an override is written as.
#[derive(Debug, Clone, Copy)]
pub enum Override<'a> {
    /// The newer record as it was written, read back.
    Copy(&'a CopiedRecord),
    /// The table's state, encoded (fields the enforcer does not read are not in it).
    State(ConsentState),
}

#[derive(Debug, Clone, Copy)]
struct Stale {
    /// The stale record's offset.
    offset: i64,
    /// Since when it is left to the instance that owns its partition.
    left_since: Option<Instant>,
}

pub struct Republishing {
    /// Users (with their consent partition) whose last record by offset was stale.
    stale: HashMap<(i32, Box<str>), Stale>,
    /// Entries were added since `stale` was last looked at.
    added: bool,
    /// The ownership version the entries left in `stale` (another instance's to write) were
    /// last checked against.
    checked: Option<u64>,
    /// When the oldest entry left to another instance is due to be written here anyway.
    grace_ends: Option<Instant>,
    /// [`OWNER_GRACE`], shorter in tests.
    grace: Duration,
    lookback: Option<Lookback>,
    /// Overrides written from the table's state although the state was valid.
    rewritten: Counter,
}

impl Republishing {
    pub fn new(lookback: Option<Lookback>, rewritten: Counter) -> Republishing {
        Republishing {
            stale: HashMap::new(),
            added: false,
            checked: None,
            grace_ends: None,
            grace: OWNER_GRACE,
            lookback,
            rewritten,
        }
    }

    /// The record of `user` at `offset` of `partition` was stale.
    pub fn stale(&mut self, partition: i32, user: &str, offset: i64) {
        self.stale.insert(
            (partition, user.into()),
            Stale {
                offset,
                left_since: None,
            },
        );
        self.added = true;
    }

    /// A record of `user` newer than the stale one was read: it is the last one now.
    pub fn superseded(&mut self, partition: i32, user: &str) {
        if !self.stale.is_empty() {
            self.stale.remove(&(partition, Box::from(user)));
        }
    }

    /// The partition is no longer followed (co-partitioned mode).
    pub fn forget_partition(&mut self, partition: i32) {
        self.stale.retain(|(p, _), _| *p != partition);
    }

    /// Writes the overrides this instance writes: copies read back since the last call, and
    /// for new entries a lookup (or, without one, the state). `current` answers a user's
    /// state now in a partition's table; an answer for a user whose state has changed since
    /// it was asked for is dropped (the newer record needs no override, or has its own).
    pub fn run(
        &mut self,
        current: &dyn Fn(i32, &str) -> Option<ConsentState>,
        effects: &mut dyn ConsentEffects,
    ) {
        if let Some(lookback) = &mut self.lookback {
            for found in lookback.answered() {
                let Lookup {
                    partition,
                    user,
                    state,
                    ..
                } = found.lookup;
                if current(partition, &user) != Some(state) {
                    continue;
                }
                match &found.record {
                    Some(copy) => effects.republish(&user, partition, Override::Copy(copy)),
                    None => {
                        self.rewritten.increment(1);
                        effects.republish(&user, partition, Override::State(state));
                    }
                }
            }
        }
        if std::mem::take(&mut self.added) {
            self.checked = None;
        }
        let version = effects.ownership_version();
        let now = Instant::now();
        let grace_over = self.grace_ends.is_some_and(|end| now >= end);
        if self.stale.is_empty() || (self.checked == Some(version) && !grace_over) {
            return;
        }
        // Those of partitions another instance writes for stay: superseded by the override it
        // writes (read back here too), or written here if this instance takes over first, or
        // once `OWNER_GRACE` has passed without it.
        let mut others = HashMap::new();
        self.grace_ends = None;
        for ((partition, user), entry) in std::mem::take(&mut self.stale) {
            let left_since = entry.left_since.unwrap_or(now);
            if !effects.republishes_for(partition) && now < left_since + self.grace {
                let end = left_since + self.grace;
                self.grace_ends = Some(self.grace_ends.map_or(end, |e| e.min(end)));
                others.insert(
                    (partition, user),
                    Stale {
                        left_since: Some(left_since),
                        ..entry
                    },
                );
                continue;
            }
            let offset = entry.offset;
            let Some(state) = current(partition, &user) else {
                continue;
            };
            let lookup = Lookup {
                partition,
                user,
                state,
                before: offset,
            };
            if state.is_failed_closed() {
                // Its override reads back as malformed; no record of it is to be copied.
                effects.republish(&lookup.user, partition, Override::State(state));
                continue;
            }
            let queued = match &mut self.lookback {
                Some(lookback) if lookback.pending() < MAX_PENDING_LOOKUPS => {
                    lookback.request(lookup.clone())
                }
                _ => false,
            };
            if !queued {
                self.rewritten.increment(1);
                effects.republish(&lookup.user, partition, Override::State(state));
            }
        }
        self.stale = others;
        self.checked = Some(version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::CategorySet;

    struct Fake {
        owned: Vec<i32>,
        version: u64,
        written: Vec<(String, i32, bool)>,
    }

    impl ConsentEffects for Fake {
        fn before_revocation(&mut self) -> bool {
            true
        }
        fn applied(&mut self, _: &str) {}
        fn republish(&mut self, user: &str, partition: i32, record: Override<'_>) {
            let copied = matches!(record, Override::Copy(_));
            self.written.push((user.to_owned(), partition, copied));
        }
        fn republishes_for(&self, partition: i32) -> bool {
            self.owned.contains(&partition)
        }
        fn ownership_version(&self) -> u64 {
            self.version
        }
    }

    fn state(bits: u64) -> ConsentState {
        ConsentState {
            granted: CategorySet::from_bits(bits),
            updated_at_ms: 10,
        }
    }

    #[test]
    fn only_owned_partitions_are_written_and_the_rest_wait_for_ownership_or_the_override() {
        let mut republishing = Republishing::new(None, Counter::noop());
        let mut effects = Fake {
            owned: vec![0],
            version: 1,
            written: Vec::new(),
        };
        let current = |_: i32, _: &str| Some(state(1));
        republishing.stale(0, "a", 5);
        republishing.stale(1, "b", 6);
        republishing.stale(1, "c", 7);
        republishing.run(&current, &mut effects);
        assert_eq!(effects.written, [("a".to_owned(), 0, false)]);
        // Nothing changed: nothing is looked at again.
        republishing.run(&current, &mut effects);
        assert_eq!(effects.written.len(), 1);
        // c's override, written by the owner, is read back; then this instance owns 1 too.
        republishing.superseded(1, "c");
        effects.owned.push(1);
        effects.version = 2;
        republishing.run(&current, &mut effects);
        assert_eq!(effects.written[1..], [("b".to_owned(), 1, false)]);
        republishing.run(&current, &mut effects);
        assert_eq!(effects.written.len(), 2);
    }

    #[test]
    fn an_override_left_to_an_owner_that_does_not_write_it_is_written_after_the_grace() {
        let mut republishing = Republishing::new(None, Counter::noop());
        republishing.grace = Duration::from_millis(50);
        let mut effects = Fake {
            owned: vec![],
            version: 1,
            written: Vec::new(),
        };
        let current = |_: i32, _: &str| Some(state(1));
        republishing.stale(3, "a", 5);
        republishing.run(&current, &mut effects);
        assert!(effects.written.is_empty());
        std::thread::sleep(Duration::from_millis(60));
        republishing.run(&current, &mut effects);
        assert_eq!(effects.written, [("a".to_owned(), 3, false)]);
        republishing.run(&current, &mut effects);
        assert_eq!(effects.written.len(), 1);
    }

    #[test]
    fn a_user_whose_state_is_gone_is_not_written_and_a_forgotten_partition_is_dropped() {
        let mut republishing = Republishing::new(None, Counter::noop());
        let mut effects = Fake {
            owned: vec![0, 1],
            version: 1,
            written: Vec::new(),
        };
        republishing.stale(0, "gone", 5);
        republishing.stale(1, "forgotten", 5);
        republishing.forget_partition(1);
        republishing.run(&|_, _| None, &mut effects);
        assert!(effects.written.is_empty());
    }
}
