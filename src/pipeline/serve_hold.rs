//! Serving the hold each turn: held events whose user has chosen are released; every
//! second, expired ones are dropped, those of partitions no longer owned are forgotten, and
//! the hold topic is paused or resumed for memory.

use std::cell::RefCell;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::hold::Hold;
use super::judge::Judge;
use super::rebalance::EventConsumerContext;
use crate::clock::now_ms;
use crate::consent::ConsentFollower;
use crate::internal_events::{self as events, InternalEvent};

/// Releases held events whose user has chosen; on `scan`, also drops expired ones, forgets
/// those of partitions no longer owned, and pauses or resumes the hold topic for memory.
pub(super) fn serve_hold(
    judge: &Judge<'_>,
    follower: &mut ConsentFollower,
    hold: &RefCell<Hold>,
    consumer: &BaseConsumer<EventConsumerContext>,
    scan: bool,
    sample_timeout: Duration,
) {
    let mut taken = hold.borrow_mut().take_chosen();
    if scan {
        taken.extend(hold.borrow_mut().take_expired(now_ms()));
    }
    if follower.follows_privacy() {
        // Judged only once the privacy topic is read as far as it was written now.
        let mut hold = hold.borrow_mut();
        if !taken.is_empty() {
            hold.gate
                .push(taken, follower.request_sample(sample_timeout));
        }
        while let Some((_, sample)) = hold.gate.front_mut() {
            let reached = match sample.wait(Duration::ZERO) {
                Ok(Some(ends)) => follower.reached(ends),
                Ok(None) => false,
                Err(error) => {
                    events::EndOffsetsNotSampled { error: &error }.emit();
                    *sample = follower.request_sample(sample_timeout);
                    false
                }
            };
            if !reached {
                break;
            }
            for event in hold.gate.pop().unwrap_or_default() {
                let table = follower.table_for(i32::from(event.input.partition));
                judge.resolve(table, event);
            }
        }
    } else {
        for event in taken {
            let table = follower.table_for(i32::from(event.input.partition));
            judge.resolve(table, event);
        }
    }
    if !scan {
        return;
    }
    let mut hold = hold.borrow_mut();
    hold.retain_assigned(|input| judge.delivery.inputs().assignment(input));
    let Ok(assignment) = consumer.assignment() else {
        return;
    };
    let mut held_partitions = rdkafka::TopicPartitionList::new();
    for element in assignment.elements_for_topic(&hold.topic) {
        held_partitions.add_partition(&hold.topic, element.partition());
    }
    if held_partitions.count() == 0 {
        return;
    }
    let result = if hold.full() {
        consumer.pause(&held_partitions)
    } else if hold.has_room() {
        consumer.resume(&held_partitions)
    } else {
        Ok(())
    };
    if let Err(error) = result {
        events::HoldPauseFailed { error: &error }.emit();
    }
}
