//! consent-enforcer: routes analytics events from Kafka to per-destination topics, only where
//! the user's consent allows it.
//!
//! The data path, one module each: [`config`] -> [`consent`] (the table, fed by the consent
//! topic) -> [`event`] (what an event says) -> [`decision`] (pure: deliver or drop, per
//! destination) -> [`delivery`] (produce, track acknowledgements, commit) -> [`pipeline`] (the
//! loop that ties them together). [`telemetry`] and [`http`] make it observable.

pub mod audit;
pub mod clock;
pub mod config;
pub mod consent;
pub mod decision;
pub mod delivery;
pub mod event;
pub mod explain;
pub mod http;
pub mod input;
pub mod internal_events;
pub(crate) mod json;
pub mod kafka;
pub mod location;
pub mod pipeline;
pub mod privacy;
pub mod process_metrics;
pub mod proto;
pub mod secrets;
pub mod service;
mod sync;
pub mod telemetry;
pub mod vocabulary;
