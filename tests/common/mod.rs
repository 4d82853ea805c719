//! Helpers shared by the broker-backed tests: the broker, random topics, producing and
//! reading records, and the enforcer as a child process.
//!
//! One job a module, all re-exported here, so a test says `use common::*`:
//! - `broker`: which broker (and why never `KAFKA_BOOTSTRAP_SERVERS`), `scripts/kafka.sh`,
//!   unique names, the clients the other modules share;
//! - `topics`: creating, configuring, growing and deleting topics; the Java partitioner;
//! - `records`: `Record`, writing records and reading a topic back;
//! - `offsets`: end offsets and a group's committed offsets;
//! - `scenario`: `Scenario` and `Destination`, one test's topics and config;
//! - `enforcer`: the enforcer as a child process, and its HTTP endpoint;
//! - `fixtures`: event and consent payloads, timestamps, message ids.
#![allow(dead_code)]

mod broker;
mod enforcer;
mod fixtures;
mod offsets;
mod records;
mod scenario;
mod topics;

// Each test binary uses a subset of the helpers, so in it some of these globs import nothing
// it uses (what `dead_code` above is for in the modules).
#[allow(unused_imports)]
pub use self::{
    broker::*, enforcer::*, fixtures::*, offsets::*, records::*, scenario::*, topics::*,
};
