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

/// Header on a consent record the enforcer re-published after a stale one.
pub const REPUBLISHED_HEADER: &str = "consent-enforcer-republished";

/// Beyond this many lookups waiting (a flood of stale records), overrides are re-encoded
/// at once rather than queued behind them.
const MAX_PENDING_LOOKUPS: usize = 1_000;

/// How long an override left to the instance that owns its partition may stay unwritten (not
/// read back) before this one writes it too: an owner may be stuck, gone without a successor
/// yet, or (its input topic's partition count having changed since it started) count owners
/// differently. A second override is harmless; none at all lets compaction bring the stale
/// record back.
pub const OWNER_GRACE: Duration = Duration::from_secs(60);

/// How long a lookup may take before the override is written from the table's state (a
/// copy that comes later is still written, after it). Until an override is written the stale
/// record is the last of its key, which compaction would keep.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);

/// What an override is written as.
#[derive(Debug)]
pub enum Override {
    /// The newer record as it was written, read back; `state` is what it reads back as.
    Copy {
        record: CopiedRecord,
        state: ConsentState,
    },
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

/// A lookup asked for and not answered yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// When the state is to be written if no answer has come.
    deadline: Instant,
    /// The state override is written already (the lookup took too long).
    written: bool,
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
    /// [`LOOKUP_DEADLINE`], shorter in tests.
    lookup_deadline: Duration,
    lookback: Option<Lookback>,
    pending: HashMap<(i32, Box<str>), Pending>,
    /// Overrides of partitions no longer followed, with the state to write (the table that
    /// held it is gone): written at the next turn.
    orphans: Vec<(i32, Box<str>, ConsentState)>,
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
            lookup_deadline: LOOKUP_DEADLINE,
            lookback,
            pending: HashMap::new(),
            orphans: Vec::new(),
            rewritten,
        }
    }

    /// The record of `user` at `offset` of `partition` was stale.
    pub fn stale(&mut self, partition: i32, user: &str, offset: i64) {
        let entry = self.stale.entry((partition, user.into())).or_insert(Stale {
            offset,
            left_since: None,
        });
        // The grace runs from the first stale record: one re-sent often must not restart it.
        entry.offset = entry.offset.max(offset);
        self.added = true;
    }

    /// A record of `user` newer than the stale one was read: it is the last one now.
    pub fn superseded(&mut self, partition: i32, user: &str) {
        if !self.stale.is_empty() {
            self.stale.remove(&(partition, Box::from(user)));
        }
    }

    /// The partition is no longer followed (co-partitioned mode): overrides asked for and not
    /// yet written are written from `current` (its table, about to be dropped) at the next
    /// turn; the rest is left to the partition's next follower, which reads the stale record
    /// too.
    pub fn forget_partition(
        &mut self,
        partition: i32,
        current: &dyn Fn(&str) -> Option<ConsentState>,
    ) {
        self.stale.retain(|(p, _), _| *p != partition);
        let orphans = &mut self.orphans;
        self.pending.retain(|(p, user), pending| {
            if *p != partition {
                return true;
            }
            if let (false, Some(state)) = (pending.written, current(user)) {
                orphans.push((partition, user.clone(), state));
            }
            false
        });
    }

    /// Writes every override asked for and not written yet from the table's state, without
    /// waiting for its lookup (before a stop: the stop's drain then covers them).
    pub fn flush(
        &mut self,
        current: &dyn Fn(i32, &str) -> Option<ConsentState>,
        effects: &mut dyn ConsentEffects,
    ) {
        for (partition, user, state) in std::mem::take(&mut self.orphans) {
            effects.republish(&user, partition, Override::State(state));
        }
        for ((partition, user), pending) in &mut self.pending {
            if !pending.written {
                pending.written = true;
                if let Some(state) = current(*partition, user) {
                    self.rewritten.increment(1);
                    effects.republish(user, *partition, Override::State(state));
                }
            }
        }
    }

    /// Writes the overrides this instance writes: copies read back since the last call (or
    /// the state, for a lookup that found nothing or took too long), and for new entries a
    /// lookup (or, without one, the state). `current` answers a user's state now in a
    /// partition's table.
    pub fn run(
        &mut self,
        current: &dyn Fn(i32, &str) -> Option<ConsentState>,
        effects: &mut dyn ConsentEffects,
    ) {
        self.write_answers(current, effects);
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
            let Some(state) = current(partition, &user) else {
                continue;
            };
            self.ask(partition, user, state, entry.offset, now, effects);
        }
        self.stale = others;
        self.checked = Some(version);
    }

    /// Asks for a copy of the record behind `state`, or writes the state at once.
    fn ask(
        &mut self,
        partition: i32,
        user: Box<str>,
        state: ConsentState,
        before: i64,
        now: Instant,
        effects: &mut dyn ConsentEffects,
    ) {
        // A failed-closed user's override reads back as malformed; no record is copied.
        let lookback = self
            .lookback
            .as_mut()
            .filter(|l| !state.is_failed_closed() && l.pending() < MAX_PENDING_LOOKUPS);
        let lookup = Lookup {
            partition,
            user,
            state,
            before,
        };
        let key = (partition, lookup.user.clone());
        if lookback.is_some_and(|l| l.request(lookup)) {
            let pending = Pending {
                deadline: now + self.lookup_deadline,
                written: false,
            };
            self.pending.insert(key, pending);
        } else {
            if !state.is_failed_closed() {
                self.rewritten.increment(1);
            }
            effects.republish(&key.1, partition, Override::State(state));
        }
    }

    /// The lookups answered, and those that took too long.
    fn write_answers(
        &mut self,
        current: &dyn Fn(i32, &str) -> Option<ConsentState>,
        effects: &mut dyn ConsentEffects,
    ) {
        for (partition, user, state) in std::mem::take(&mut self.orphans) {
            effects.republish(&user, partition, Override::State(state));
        }
        let Some(lookback) = &mut self.lookback else {
            return;
        };
        let (answers, gone) = lookback.answered();
        for found in answers {
            let Lookup {
                partition,
                user,
                state,
                ..
            } = found.lookup;
            let Some(pending) = self.pending.remove(&(partition, user.clone())) else {
                // Its partition was forgotten: written from its state then.
                continue;
            };
            match (current(partition, &user), found.record) {
                // Still the state looked for: the copy, last, wins compaction.
                (Some(now), Some(record)) if now == state => {
                    effects.republish(&user, partition, Override::Copy { record, state });
                }
                (Some(now), None) if now == state => {
                    if !pending.written {
                        self.rewritten.increment(1);
                        effects.republish(&user, partition, Override::State(now));
                    }
                }
                // Changed since, perhaps by a record of another partition: the stale record
                // still needs overriding, with the state now.
                (Some(now), _) => effects.republish(&user, partition, Override::State(now)),
                (None, _) => {}
            }
        }
        let now = Instant::now();
        for ((partition, user), pending) in &mut self.pending {
            if !pending.written && (gone || now >= pending.deadline) {
                pending.written = true;
                if let Some(state) = current(*partition, user) {
                    self.rewritten.increment(1);
                    effects.republish(user, *partition, Override::State(state));
                }
            }
        }
        if gone {
            // The thread is gone: nothing more will be answered.
            self.pending.clear();
            self.lookback = None;
        }
    }
}

#[cfg(test)]
mod tests;
