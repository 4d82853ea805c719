use super::*;
use crate::consent::lookback::Found;
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
    fn republish(&mut self, user: &str, partition: i32, record: Override) {
        let copied = matches!(record, Override::Copy { .. });
        self.written.push((user.to_owned(), partition, copied));
    }
    fn republishes_for(&self, partition: i32) -> bool {
        self.owned.contains(&partition)
    }
    fn ownership_version(&self) -> u64 {
        self.version
    }
    fn delete(&mut self, _: &str, _: &crate::privacy::Deletion) -> bool {
        true
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

fn owning_all() -> Fake {
    Fake {
        owned: vec![0, 1, 2, 3],
        version: 1,
        written: Vec::new(),
    }
}

fn copy() -> CopiedRecord {
    CopiedRecord {
        value: b"{}".to_vec(),
        headers: None,
    }
}

#[test]
fn a_copy_found_is_the_override_and_one_not_found_is_the_state_counted() {
    let (lookback, requests, answers) = Lookback::served_by_caller();
    let mut republishing = Republishing::new(Some(lookback), Counter::noop());
    let mut effects = owning_all();
    let current = |_: i32, _: &str| Some(state(1));
    republishing.stale(0, "a", 5);
    republishing.stale(1, "b", 6);
    republishing.run(&current, &mut effects);
    assert!(effects.written.is_empty(), "waits for the lookups");
    for lookup in requests.try_iter() {
        let record = (lookup.user.as_ref() == "a").then(copy);
        answers.send(Found { lookup, record }).unwrap();
    }
    republishing.run(&current, &mut effects);
    effects.written.sort();
    assert_eq!(
        effects.written,
        [("a".to_owned(), 0, true), ("b".to_owned(), 1, false)]
    );
}

#[test]
fn an_override_waiting_for_its_copy_is_written_from_the_state_at_the_deadline_or_a_flush() {
    let (lookback, requests, answers) = Lookback::served_by_caller();
    let mut republishing = Republishing::new(Some(lookback), Counter::noop());
    republishing.lookup_deadline = Duration::from_millis(50);
    let mut effects = owning_all();
    let current = |_: i32, _: &str| Some(state(1));
    republishing.stale(0, "late", 5);
    republishing.run(&current, &mut effects);
    std::thread::sleep(Duration::from_millis(60));
    republishing.run(&current, &mut effects);
    assert_eq!(effects.written, [("late".to_owned(), 0, false)]);
    // The copy that comes after is still written, last.
    let lookup = requests.try_recv().unwrap();
    answers
        .send(Found {
            lookup,
            record: Some(copy()),
        })
        .unwrap();
    republishing.run(&current, &mut effects);
    assert_eq!(effects.written[1..], [("late".to_owned(), 0, true)]);
    // Before a stop, nothing waits.
    republishing.stale(2, "stopping", 7);
    republishing.run(&current, &mut effects);
    republishing.flush(&current, &mut effects);
    assert_eq!(effects.written[2..], [("stopping".to_owned(), 2, false)]);
}

#[test]
fn a_state_changed_since_the_lookup_is_written_and_a_gone_thread_flushes_the_rest() {
    let (lookback, requests, answers) = Lookback::served_by_caller();
    let mut republishing = Republishing::new(Some(lookback), Counter::noop());
    let mut effects = owning_all();
    republishing.stale(0, "changed", 5);
    republishing.stale(1, "waiting", 5);
    republishing.run(&|_, _| Some(state(1)), &mut effects);
    let lookups: Vec<Lookup> = requests.try_iter().collect();
    for lookup in lookups {
        if lookup.user.as_ref() == "changed" {
            answers
                .send(Found {
                    lookup,
                    record: Some(copy()),
                })
                .unwrap();
        }
    }
    drop(answers);
    // The copy's state is no longer current: the state now is written instead.
    republishing.run(&|_, _| Some(state(2)), &mut effects);
    effects.written.sort();
    assert_eq!(
        effects.written,
        [
            ("changed".to_owned(), 0, false),
            ("waiting".to_owned(), 1, false)
        ]
    );
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
    republishing.forget_partition(1, &|_| Some(state(1)));
    republishing.run(&|_, _| None, &mut effects);
    assert!(effects.written.is_empty());
}
