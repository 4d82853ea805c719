//! The verification harness: seeded, repeatable scenarios that write interleaved consent
//! changes and events with known ground truth, run one or two enforcers, inject failures
//! (kill -9, restarts, instances joining), and check every destination record.
//!
//! Ground truth comes from the write order: every write is acknowledged before the next, so
//! an event's consent is the last consent record of its user written before it.
//! - leak: delivered, but its user had not granted the destination's category when it was
//!   written;
//! - loss: granted when written and never revoked afterwards, but not delivered;
//! - duplicate (exactly-once only): delivered more than once.
//!
//! An event granted when written but revoked later may go either way (revocation wins).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

/// A small deterministic generator (xorshift64*), so scenarios repeat from their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const CATEGORIES: [&str; 2] = ["analytics", "advertising"];

#[derive(Clone, Copy, Default)]
struct Grants([bool; 2]);

/// One write of the timeline.
enum Write {
    Consent { user: usize, grants: Grants },
    Event { user: usize, id: usize },
}

struct Timeline {
    writes: Vec<Write>,
}

impl Timeline {
    fn generate(seed: u64, users: usize, writes: usize) -> Timeline {
        let mut rng = Rng(seed.max(1));
        let writes = (0..writes)
            .map(|id| {
                let user = rng.below(users as u64) as usize;
                if rng.below(5) == 0 {
                    Write::Consent {
                        user,
                        grants: Grants([rng.below(2) == 0, rng.below(2) == 0]),
                    }
                } else {
                    Write::Event { user, id }
                }
            })
            .collect();
        Timeline { writes }
    }

    /// Writes every record, each acknowledged before the next and in a later millisecond:
    /// the ground truth is the write order, and the enforcer can only see an order that the
    /// millisecond timestamps show (in a tie it fails closed, which the truth would count as
    /// a loss).
    fn write(&self, s: &Scenario, from: usize, to: usize) {
        for write in &self.writes[from..to] {
            match write {
                Write::Consent { user, grants } => {
                    let granted: Vec<&str> = CATEGORIES
                        .iter()
                        .zip(grants.0)
                        .filter(|(_, g)| *g)
                        .map(|(c, _)| *c)
                        .collect();
                    let denied: Vec<&str> = CATEGORIES
                        .iter()
                        .zip(grants.0)
                        .filter(|(_, g)| !*g)
                        .map(|(c, _)| *c)
                        .collect();
                    s.send_consent(
                        &format!("user-{user}"),
                        &consent(&granted, &denied, &rfc3339_from_now(0)),
                    );
                }
                Write::Event { user, id } => {
                    let user = format!("user-{user}");
                    s.send_events(&[(&user, &track(&user, &format!("e{id}")))]);
                }
            }
            next_millisecond();
        }
    }

    /// For destination `category`: (events that must arrive, events that must not).
    fn truth(&self, category: usize) -> (Vec<usize>, Vec<usize>) {
        let mut current: HashMap<usize, Grants> = HashMap::new();
        let mut granted_events: Vec<(usize, usize)> = Vec::new();
        let mut forbidden = Vec::new();
        let mut revoked_after: HashMap<usize, usize> = HashMap::new();
        for (position, write) in self.writes.iter().enumerate() {
            match write {
                Write::Consent { user, grants } => {
                    if !grants.0[category] {
                        revoked_after.insert(*user, position);
                    }
                    current.insert(*user, *grants);
                }
                Write::Event { user, id } => {
                    if current.get(user).is_some_and(|g| g.0[category]) {
                        granted_events.push((*id, position));
                    } else {
                        forbidden.push(*id);
                    }
                }
            }
        }
        let users_of: HashMap<usize, usize> = self
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::Event { user, id } => Some((*id, *user)),
                Write::Consent { .. } => None,
            })
            .collect();
        let required = granted_events
            .into_iter()
            .filter(|(id, position)| {
                revoked_after
                    .get(&users_of[id])
                    .is_none_or(|revoked| revoked < position)
            })
            .map(|(id, _)| id)
            .collect();
        (required, forbidden)
    }
}

/// (lost, leaked, duplicated) over both destinations; printed.
fn check(s: &Scenario, timeline: &Timeline) -> (usize, usize, usize) {
    let (mut lost, mut leaked, mut duplicated) = (0, 0, 0);
    for (category, destination) in ["analytics", "ads"].iter().enumerate() {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for id in message_ids(&s.delivered(destination)) {
            *seen.entry(id).or_default() += 1;
        }
        let (required, forbidden) = timeline.truth(category);
        let missing: Vec<&usize> = required
            .iter()
            .filter(|id| !seen.contains_key(&format!("e{id}")))
            .collect();
        if !missing.is_empty() {
            println!("harness: {destination} lost {missing:?}");
        }
        lost += missing.len();
        leaked += forbidden
            .iter()
            .filter(|id| seen.contains_key(&format!("e{id}")))
            .count();
        duplicated += seen.values().filter(|n| **n > 1).count();
    }
    println!("harness: lost {lost}, leaked {leaked}, duplicated {duplicated}");
    (lost, leaked, duplicated)
}

fn scenario(name: &str, exactly_once: bool) -> Scenario {
    let mut s = Scenario::with_partitions(
        name,
        vec![
            Destination::new("analytics", &["analytics"]),
            Destination::new("ads", &["advertising"]),
        ],
        4,
    );
    // Each user changes consent every few seconds here, far more than real users: keep
    // enough history that the bound on it is not what the scenario measures.
    s.consent_extra = "history_max_changes = 256".to_owned();
    if exactly_once {
        s.delivery_extra = format!(
            "guarantee = \"exactly_once\"\ntransactional_id = \"{}-{{instance}}\"",
            s.group
        );
    }
    s
}

/// Two instances; the second is killed with SIGKILL a third of the way through the writes
/// and started again two thirds through.
fn run(name: &str, seed: u64, exactly_once: bool) -> (usize, usize, usize) {
    let s = scenario(name, exactly_once);
    let timeline = Timeline::generate(seed, 30, 2_400);
    let a = s.start_instance("a");
    let mut b = s.start_instance("b");
    a.wait_ready();
    b.wait_ready();
    let third = timeline.writes.len() / 3;
    timeline.write(&s, 0, third);
    b.kill9();
    timeline.write(&s, third, 2 * third);
    let _b = s.start_instance("b");
    timeline.write(&s, 2 * third, timeline.writes.len());
    s.wait_processed();
    std::thread::sleep(Duration::from_millis(200));
    check(&s, &timeline)
}

#[test]
fn harness_at_least_once_with_kill_and_restart_loses_and_leaks_nothing() {
    let (lost, leaked, _) = run("harness-alo", 7, false);
    assert_eq!((lost, leaked), (0, 0));
}

#[test]
fn harness_exactly_once_with_kill_and_restart_loses_leaks_and_duplicates_nothing() {
    assert_eq!(run("harness-eos", 11, true), (0, 0, 0));
}

#[test]
fn harness_ground_truth_is_repeatable_from_its_seed() {
    let a = Timeline::generate(42, 30, 500);
    let b = Timeline::generate(42, 30, 500);
    assert_eq!(a.truth(0), b.truth(0));
    assert_eq!(a.truth(1), b.truth(1));
    let (required, forbidden) = a.truth(0);
    assert!(!required.is_empty() && !forbidden.is_empty());
}
