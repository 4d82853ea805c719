//! One small type per notable happening. Its `emit()` logs once and counts once (in
//! `consent_enforcer_errors_total`, by `stage` and `error_type`), so that a log line and its
//! counter never drift apart, as vector's `internal_events` do. Call sites say what happened
//! (`ConsentStale { .. }.emit()`); how it is reported is decided here.
//!
//! No event logs a user identifier or a payload.

mod commit;
mod consent;
mod consume;
mod delivery;
mod http;

pub use commit::*;
pub use consent::*;
pub use consume::*;
pub use delivery::*;
pub use http::*;

/// Something worth telling the operator about.
pub trait InternalEvent {
    /// Logs it (at most once) and counts it (once).
    fn emit(self);
}
