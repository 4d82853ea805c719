//! The one interface through which the pipeline commits, whatever the guarantee: each turn
//! ([`Commits::tick`]), before a consent revocation applies ([`before_revocation`]), when
//! partitions are revoked ([`on_revoke`]) and at the stop ([`Commits::shutdown`]). Each
//! guarantee's strategy is read top to bottom in its own file: `at_least_once.rs` (offsets
//! committed to the group) and `exactly_once.rs` (offsets committed in the transaction).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext};

use super::at_least_once::{self, AtLeastOnce};
use super::exactly_once::{self, ExactlyOnce, Rewound};
use super::Delivery;
use crate::config::Guarantee;
use crate::input::InputPartition;

/// The commit strategy of the configured guarantee, with its state.
pub enum Commits<'c> {
    AtLeastOnce(AtLeastOnce<'c>),
    ExactlyOnce(ExactlyOnce),
}

impl<'c> Commits<'c> {
    pub fn new(guarantee: Guarantee, commit_interval: Duration, drain_timeout: Duration) -> Self {
        match guarantee {
            Guarantee::AtLeastOnce => Commits::AtLeastOnce(AtLeastOnce::new(commit_interval)),
            Guarantee::ExactlyOnce => Commits::ExactlyOnce(ExactlyOnce::new(drain_timeout)),
        }
    }

    /// Each turn of the loop, after acknowledgements are settled. `stale`: the consent
    /// table is not current (nothing is judged; at-least-once does not commit then).
    /// Returns where an aborted transaction rewound the consumer to.
    pub fn tick<C: ConsumerContext>(
        &mut self,
        delivery: &Delivery,
        consumer: &'c BaseConsumer<C>,
        stale: bool,
    ) -> Rewound {
        match self {
            Commits::AtLeastOnce(commits) => {
                commits.tick(delivery, consumer, stale);
                Rewound::new()
            }
            Commits::ExactlyOnce(commits) => commits.tick(delivery, consumer),
        }
    }

    /// At the stop, within its deadline: the last commit. True if nothing acknowledged was
    /// left uncommitted and no write was left unacknowledged.
    pub fn shutdown<C: ConsumerContext>(
        self,
        delivery: &Delivery,
        consumer: &BaseConsumer<C>,
        drain_timeout: Duration,
    ) -> bool {
        match self {
            Commits::AtLeastOnce(commits) => commits.shutdown(delivery, consumer, drain_timeout),
            Commits::ExactlyOnce(commits) => commits.shutdown(delivery, consumer),
        }
    }
}

/// Before a consent revocation is applied: every write judged before it must be final
/// (acknowledged, or committed in its transaction). `consumer` is None while the table
/// loads, before any event is judged. False if delivery failed or the service is stopping.
/// Where an aborted transaction rewound the consumer to is added to `rewound`.
pub fn before_revocation<C: ConsumerContext>(
    delivery: &Delivery,
    consumer: Option<&BaseConsumer<C>>,
    drain_timeout: Duration,
    rewound: &mut Rewound,
) -> bool {
    match (delivery.guarantee(), consumer) {
        (Guarantee::ExactlyOnce, Some(consumer)) => {
            exactly_once::before_revocation(delivery, consumer, drain_timeout, rewound)
        }
        _ => at_least_once::before_revocation(delivery, drain_timeout),
    }
}

/// Partitions are being revoked (inside the consumer's poll): what this instance did with
/// them is committed before they are released. Where an aborted transaction rewound the
/// consumer to is added to `rewound`.
pub fn on_revoke<C: ConsumerContext>(
    delivery: &Delivery,
    consumer: &BaseConsumer<C>,
    revoked: &[InputPartition],
    drain_timeout: Duration,
    rewound: &mut Rewound,
) {
    match delivery.guarantee() {
        Guarantee::AtLeastOnce => {
            at_least_once::on_revoke(delivery, consumer, revoked, drain_timeout)
        }
        Guarantee::ExactlyOnce => {
            exactly_once::on_revoke(delivery, consumer, revoked, drain_timeout, rewound)
        }
    }
}
