use super::*;

fn state(bits: u64, updated_at_ms: i64) -> ConsentState {
    ConsentState {
        granted: CategorySet::from_bits(bits),
        updated_at_ms,
    }
}

/// A table whose window reaches back to the epoch, so fixed small times stay in it.
fn table() -> ConsentTable {
    ConsentTable::new(i64::MAX / 2, 4)
}

const NOW: i64 = 1_000_000;

fn set(table: &mut ConsentTable, user: &str, bits: u64, at: i64) -> RecordOutcome {
    table.apply_record(user, Ok(ConsentUpdate::Set(state(bits, at))), NOW, NOW)
}

fn known(table: &ConsentTable, user: &str, at: i64) -> Vec<ConsentState> {
    match table.states_at(user, at) {
        StatesAt::Known(candidates) => candidates.iter().collect(),
        other => panic!("expected known states, got {other:?}"),
    }
}

const STORED: RecordOutcome = RecordOutcome::Stored {
    future_dated: false,
};

#[test]
fn newer_and_equal_states_apply() {
    let mut table = table();
    assert_eq!(set(&mut table, "u", 1, 10), STORED);
    assert_eq!(set(&mut table, "u", 2, 20), STORED);
    assert_eq!(set(&mut table, "u", 3, 20), STORED);
    assert_eq!(table.get("u"), Some(state(3, 20)));
}

#[test]
fn older_state_is_stale_and_ignored() {
    let mut table = table();
    set(&mut table, "u", 1, 20);
    assert_eq!(
        set(&mut table, "u", 2, 10),
        RecordOutcome::Stale {
            stored: state(1, 20)
        }
    );
    assert_eq!(table.get("u"), Some(state(1, 20)));
}

#[test]
fn updated_at_later_than_the_record_is_capped_at_the_record_time() {
    let mut table = table();
    let far_future = state(1, 4_102_444_800_000);
    assert_eq!(
        table.apply_record("u", Ok(ConsentUpdate::Set(far_future)), 500, NOW),
        RecordOutcome::Stored { future_dated: true }
    );
    assert_eq!(table.get("u"), Some(state(1, 500)));
    // A later choice is not stale because of the wrong clock.
    assert_eq!(set(&mut table, "u", 0, 600), STORED);
}

#[test]
fn first_known_time_is_that_of_the_oldest_state_kept() {
    let mut table = table();
    assert_eq!(table.first_known_ms("u"), None);
    set(&mut table, "u", 1, 10);
    set(&mut table, "u", 2, 20);
    assert_eq!(table.first_known_ms("u"), Some(10));
}

#[test]
fn tombstone_forgets_the_user() {
    let mut table = table();
    set(&mut table, "u", 1, 20);
    assert_eq!(
        table.apply_record("u", Ok(ConsentUpdate::Remove), NOW, NOW),
        RecordOutcome::Removed
    );
    assert_eq!(table.get("u"), None);
    assert_eq!(table.states_at("u", 30), StatesAt::Absent);
    assert!(table.is_empty());
}

#[test]
fn state_at_a_time_follows_the_history() {
    let mut table = table();
    set(&mut table, "u", 1, 10);
    set(&mut table, "u", 2, 20);
    set(&mut table, "u", 3, 30);
    assert_eq!(table.states_at("u", 5), StatesAt::Unknown);
    assert_eq!(known(&table, "u", 11), [state(1, 10)]);
    assert_eq!(known(&table, "u", 25), [state(2, 20)]);
    assert_eq!(known(&table, "u", 99), [state(3, 30)]);
    assert_eq!(table.states_at("nobody", 99), StatesAt::Absent);
}

#[test]
fn time_before_the_first_known_state_is_unknown_not_absent() {
    let mut table = table();
    set(&mut table, "u", 1, 10);
    assert_eq!(table.states_at("u", 10), StatesAt::Unknown);
    assert_eq!(table.states_at("u", 3), StatesAt::Unknown);
}

#[test]
fn every_state_of_the_events_millisecond_is_a_candidate_with_the_one_before() {
    let mut table = table();
    set(&mut table, "u", 1, 10);
    set(&mut table, "u", 2, 20);
    set(&mut table, "u", 4, 20);
    set(&mut table, "u", 8, 30);
    assert_eq!(
        known(&table, "u", 20),
        [state(4, 20), state(2, 20), state(1, 10)]
    );
    // The current state counts too when it was set in the event's millisecond.
    assert_eq!(known(&table, "u", 30), [state(8, 30), state(4, 20)]);
    assert_eq!(known(&table, "u", 31), [state(8, 30)]);
}

#[test]
fn a_re_sent_choice_keeps_its_own_time() {
    let mut table = table();
    set(&mut table, "u", 1, 10);
    set(&mut table, "u", 1, 70);
    set(&mut table, "u", 2, 200);
    assert_eq!(known(&table, "u", 100), [state(1, 70)]);
    assert_eq!(known(&table, "u", 50), [state(1, 10)]);
}

#[test]
fn a_state_that_ended_before_the_window_takes_the_older_history_with_it() {
    let mut table = ConsentTable::new(60_000, 4);
    let at = |bits, t| Ok(ConsentUpdate::Set(state(bits, t)));
    table.apply_record("u", at(1, 0), NOW, 10_000);
    table.apply_record("u", at(0, 1_000), NOW, 10_000);
    // Stamped 2 s but applied at 200 s: the state from 1 s ended before the window.
    table.apply_record("u", at(1, 2_000), NOW, 200_000);
    assert_eq!(table.states_at("u", 1_500), StatesAt::Unknown);
    assert_eq!(table.states_at("u", 500), StatesAt::Unknown);
}

#[test]
fn a_sweep_forgets_states_that_ended_before_the_window_for_users_who_never_change_again() {
    let mut table = ConsentTable::new(60_000, 4);
    let at = |bits, t| Ok(ConsentUpdate::Set(state(bits, t)));
    table.apply_record("u", at(1, 0), NOW, 0);
    table.apply_record("u", at(0, 10_000), NOW, 10_000);
    table.apply_record("v", at(1, 0), NOW, 0);
    table.apply_record("v", at(0, 50_000), NOW, 50_000);
    // u's earlier state ended at 10 s, v's at 50 s: at 100 s only u's is past the window.
    assert_eq!(table.sweep(100_000), 1);
    assert_eq!(table.states_at("u", 5_000), StatesAt::Unknown);
    assert_eq!(known(&table, "v", 5_000), [state(1, 0)]);
    assert_eq!(table.users_with_history(), 1);
    // The current state is untouched.
    assert_eq!(known(&table, "u", 20_000), [state(0, 10_000)]);
    assert_eq!(table.sweep(200_000), 1);
    assert_eq!(table.users_with_history(), 0);
}

#[test]
fn the_same_state_twice_keeps_no_history() {
    let mut table = table();
    set(&mut table, "u", 1, 10);
    set(&mut table, "u", 1, 10);
    assert!(table.history.is_empty());
    assert_eq!(table.states_at("u", 10), StatesAt::Unknown);
}

#[test]
fn history_keeps_a_bounded_number_of_changes() {
    let mut table = ConsentTable::new(i64::MAX / 2, 2);
    for t in 1..=5 {
        set(&mut table, "u", t as u64, t * 10);
    }
    assert_eq!(known(&table, "u", 35), [state(3, 30)]);
    assert_eq!(table.states_at("u", 25), StatesAt::Unknown);
}

#[test]
fn history_forgets_states_that_ended_before_the_window() {
    let mut table = ConsentTable::new(1_000, 4);
    let record = |bits, at| Ok(ConsentUpdate::Set(state(bits, at)));
    table.apply_record("u", record(1, NOW - 10_000), NOW, NOW);
    table.apply_record("u", record(2, NOW - 5_000), NOW, NOW);
    table.apply_record("u", record(3, NOW), NOW, NOW);
    // The state from -5 s ended now: kept. The one from -10 s ended at -5 s: forgotten.
    assert_eq!(known(&table, "u", NOW - 1), [state(2, NOW - 5_000)]);
    assert_eq!(table.states_at("u", NOW - 6_000), StatesAt::Unknown);
}

#[test]
fn re_sent_identical_choices_do_not_use_up_the_history() {
    let mut table = ConsentTable::new(i64::MAX / 2, 2);
    set(&mut table, "u", 1, 10);
    set(&mut table, "u", 2, 20);
    for t in 3..10 {
        set(&mut table, "u", 2, t * 10);
    }
    set(&mut table, "u", 3, 100);
    assert_eq!(known(&table, "u", 15), [state(1, 10)]);
    assert_eq!(known(&table, "u", 55), [state(2, 50)]);
}

#[test]
fn malformed_record_fails_closed_at_every_time_and_forgets_the_history() {
    let mut table = table();
    set(&mut table, "u", 1, 10);
    set(&mut table, "u", 2, 20);
    assert_eq!(
        table.apply_record("u", Err(Rejection::NotJson), 5, NOW),
        RecordOutcome::FailedClosed(Rejection::NotJson)
    );
    assert_eq!(table.get("u"), Some(ConsentState::FAILED_CLOSED));
    assert_eq!(table.states_at("u", 15), StatesAt::Unknown);
    assert_eq!(table.states_at("u", NOW * 2), StatesAt::Unknown);
}

#[test]
fn after_a_malformed_record_the_last_valid_state_is_still_the_bar_for_staleness() {
    let mut table = table();
    set(&mut table, "u", 1, 20);
    table.apply_record("u", Err(Rejection::BadPreferences), NOW, NOW);
    assert_eq!(
        set(&mut table, "u", 3, 10),
        RecordOutcome::Stale {
            stored: ConsentState::FAILED_CLOSED
        }
    );
    // Re-published as malformed: reading it back keeps the user failed closed.
    assert_eq!(table.get("u"), Some(ConsentState::FAILED_CLOSED));
    assert_eq!(table.get("u"), Some(ConsentState::FAILED_CLOSED));
    assert_eq!(set(&mut table, "u", 3, 20), STORED);
    assert_eq!(table.get("u"), Some(state(3, 20)));
    // What came before the valid record stays unknown.
    assert_eq!(table.states_at("u", 20), StatesAt::Unknown);
    assert_eq!(known(&table, "u", 21), [state(3, 20)]);
}

#[test]
fn every_change_may_narrow_a_person_but_a_full_grant_or_a_stale_record() {
    let all = CategorySet::from_bits(0b111);
    let mut table = table();
    let record = |bits, at| Ok(ConsentUpdate::Set(state(bits, at)));
    // A first record, wider than nothing for this identifier, may narrow a person whose
    // other identifier granted more, or who had no state under `when_missing = "allow"`.
    assert!(table.may_narrow("u", &record(0b011, 10), NOW, Widest::of(all)));
    assert!(!table.may_narrow("u", &record(0b111, 10), NOW, Widest::of(all)));
    set(&mut table, "u", 0b001, 10);
    assert!(table.may_narrow("u", &record(0b011, 20), NOW, Widest::of(all)));
    assert!(!table.may_narrow("u", &record(0b000, 5), NOW, Widest::of(all)));
    assert!(table.may_narrow("u", &Ok(ConsentUpdate::Remove), NOW, Widest::of(all)));
    assert!(!table.may_narrow("nobody", &Ok(ConsentUpdate::Remove), NOW, Widest::of(all)));
    assert!(table.may_narrow("u", &Err(Rejection::NotJson), NOW, Widest::of(all)));
    table.apply_record("u", Err(Rejection::NotJson), NOW, NOW);
    assert!(!table.may_narrow("u", &Err(Rejection::NotJson), NOW, Widest::of(all)));
    assert!(!table.may_narrow("u", &record(0b001, 30), NOW, Widest::of(all)));
    assert!(!table.may_narrow("u", &Ok(ConsentUpdate::Remove), NOW, Widest::of(all)));
}
