//! The metrics and health listener.

use super::InternalEvent;
use crate::telemetry;

/// Accepting a connection failed, the first time in a run of failures (the listener backs
/// off meanwhile, for example while file descriptors are exhausted).
pub struct HttpAcceptFailed<'a> {
    pub error: &'a std::io::Error,
}

impl InternalEvent for HttpAcceptFailed<'_> {
    fn emit(self) {
        telemetry::error("http", "accept");
        tracing::warn!(error = %self.error, "accepting an HTTP connection failed; backing off");
    }
}
