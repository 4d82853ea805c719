//! Who is suppressed (privacy requests, `[privacy] topic`): a suppressed identifier's events
//! reach no destination, strictly necessary ones included. Keyed like consent states (a
//! `userId` or an `anonymousId`). Besides the request in force, the last suppression lifted is
//! kept, so an event dated while its user was suppressed stays dropped when it is judged after
//! the suppression was lifted.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::key::UserKey;
use crate::privacy::{PrivacyRejection, PrivacyUpdate, RequestType};

#[derive(Debug, Default)]
pub struct Suppressions {
    users: HashMap<UserKey, Suppression, RandomState>,
    suppressed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Suppression {
    /// `requestedAt` of the last valid request: an older one is stale.
    at_ms: Option<i64>,
    /// That request's type, and whether it is marked done (`deletedAt`).
    kind: Option<RequestType>,
    deleted: bool,
    /// Suppressed now, since this time (`i64::MIN` when failed closed by a rejected record).
    since_ms: Option<i64>,
    /// The last suppression lifted: from, to.
    lifted: Option<(i64, i64)>,
}

/// An identifier's privacy view: what the audit log records before and after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrivacyView {
    pub suppressed: bool,
    /// Suppressed by a record not understood, until a valid request replaces it.
    pub failed_closed: bool,
    /// The valid request in force: its type, `requestedAt`, and whether it is marked done.
    pub request: Option<(RequestType, i64, bool)>,
}

const NONE: Suppression = Suppression {
    at_ms: None,
    kind: None,
    deleted: false,
    since_ms: None,
    lifted: None,
};

/// What applying one privacy record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivacyOutcome {
    /// The identifier is suppressed now (it was not before).
    Suppressed,
    /// Its suppression was lifted.
    Lifted,
    /// Applied; suppressed or not as before.
    Unchanged,
    /// Older than the request in force: ignored.
    Stale,
    /// Rejected: the identifier is suppressed until a valid request replaces it.
    FailedClosed(PrivacyRejection),
}

impl Suppressions {
    /// Whether `user`'s events dated `time_ms` reach no destination: it is suppressed now, or
    /// was at that time.
    pub fn is_suppressed(&self, user: &str, time_ms: i64) -> bool {
        self.users.get(user).is_some_and(|s| {
            s.since_ms.is_some()
                || s.lifted
                    .is_some_and(|(from, to)| from <= time_ms && time_ms < to)
        })
    }

    /// `user`'s privacy view now.
    pub fn view(&self, user: &str) -> PrivacyView {
        self.users
            .get(user)
            .map_or_else(PrivacyView::default, |s| PrivacyView {
                suppressed: s.since_ms.is_some(),
                failed_closed: s.since_ms == Some(i64::MIN),
                request: s.kind.zip(s.at_ms).map(|(kind, at)| (kind, at, s.deleted)),
            })
    }

    /// Whether applying `update` would suppress `user`, who is not suppressed now (so every
    /// write judged before must finish first, as before a revocation).
    pub fn would_suppress(
        &self,
        user: &str,
        update: &Result<PrivacyUpdate, PrivacyRejection>,
    ) -> bool {
        let current = self.users.get(user);
        if current.is_some_and(|s| s.since_ms.is_some()) {
            return false;
        }
        match update {
            Err(_) => true,
            Ok(PrivacyUpdate::Remove) => false,
            Ok(PrivacyUpdate::Request {
                kind,
                requested_at_ms,
                ..
            }) => {
                kind.suppresses()
                    && current
                        .and_then(|s| s.at_ms)
                        .is_none_or(|at| at <= *requested_at_ms)
            }
        }
    }

    pub fn apply(
        &mut self,
        user: &str,
        update: Result<PrivacyUpdate, PrivacyRejection>,
        record_time_ms: i64,
    ) -> PrivacyOutcome {
        let entry = self.users.entry(user.into()).or_insert(NONE);
        let was = entry.since_ms.is_some();
        let outcome = match update {
            Err(reason) => {
                entry.since_ms = Some(i64::MIN);
                PrivacyOutcome::FailedClosed(reason)
            }
            Ok(PrivacyUpdate::Request {
                requested_at_ms, ..
            }) if entry.at_ms.is_some_and(|at| at > requested_at_ms) => PrivacyOutcome::Stale,
            Ok(update) => {
                let (suppresses, at) = match update {
                    PrivacyUpdate::Request {
                        kind,
                        requested_at_ms,
                        deleted,
                    } => {
                        entry.at_ms = Some(requested_at_ms);
                        entry.kind = Some(kind);
                        entry.deleted = deleted;
                        // A deletion asked without suppression leaves a suppression as it is.
                        let suppresses = if kind == RequestType::DeleteOnly {
                            entry.since_ms.is_some()
                        } else {
                            kind.suppresses()
                        };
                        (suppresses, requested_at_ms)
                    }
                    // Withdrawn: no request is in force any more.
                    PrivacyUpdate::Remove => {
                        entry.at_ms = None;
                        entry.kind = None;
                        entry.deleted = false;
                        (false, record_time_ms)
                    }
                };
                match (entry.since_ms, suppresses) {
                    (None, true) => entry.since_ms = Some(at),
                    (Some(since), false) => {
                        entry.lifted = Some((since, at.max(since)));
                        entry.since_ms = None;
                    }
                    _ => {}
                }
                match (was, entry.since_ms.is_some()) {
                    (false, true) => PrivacyOutcome::Suppressed,
                    (true, false) => PrivacyOutcome::Lifted,
                    _ => PrivacyOutcome::Unchanged,
                }
            }
        };
        let is = entry.since_ms.is_some();
        if *entry == NONE {
            self.users.remove(user);
        }
        match (was, is) {
            (false, true) => self.suppressed += 1,
            (true, false) => self.suppressed -= 1,
            _ => {}
        }
        outcome
    }

    /// Identifiers suppressed now.
    pub fn suppressed(&self) -> usize {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::RequestType;

    fn request(kind: RequestType, at: i64) -> Result<PrivacyUpdate, PrivacyRejection> {
        Ok(PrivacyUpdate::Request {
            kind,
            requested_at_ms: at,
            deleted: false,
        })
    }

    #[test]
    fn suppression_holds_until_lifted_and_then_for_events_dated_within_it() {
        let mut s = Suppressions::default();
        assert!(s.would_suppress("u", &request(RequestType::Suppress, 100)));
        assert_eq!(
            s.apply("u", request(RequestType::Suppress, 100), 100),
            PrivacyOutcome::Suppressed
        );
        assert!(s.is_suppressed("u", 0) && s.is_suppressed("u", 500));
        assert!(!s.is_suppressed("other", 500));
        assert_eq!(s.suppressed(), 1);
        // Older than the request in force: stale.
        assert_eq!(
            s.apply("u", request(RequestType::Unsuppress, 50), 150),
            PrivacyOutcome::Stale
        );
        assert!(s.is_suppressed("u", 500));
        assert_eq!(
            s.apply("u", request(RequestType::Unsuppress, 200), 200),
            PrivacyOutcome::Lifted
        );
        assert!(
            !s.is_suppressed("u", 99) && s.is_suppressed("u", 150) && !s.is_suppressed("u", 200)
        );
        assert_eq!(s.suppressed(), 0);
    }

    #[test]
    fn a_rejected_request_suppresses_until_a_valid_one_replaces_it() {
        let mut s = Suppressions::default();
        s.apply("u", request(RequestType::Unsuppress, 100), 100);
        assert!(s.would_suppress("u", &Err(PrivacyRejection::UnknownType)));
        assert_eq!(
            s.apply("u", Err(PrivacyRejection::UnknownType), 120),
            PrivacyOutcome::FailedClosed(PrivacyRejection::UnknownType)
        );
        assert!(s.is_suppressed("u", 0));
        assert_eq!(
            s.apply("u", request(RequestType::Unsuppress, 130), 130),
            PrivacyOutcome::Lifted
        );
        // Events dated before the valid request stay dropped: the failed record came first.
        assert!(s.is_suppressed("u", 0) && !s.is_suppressed("u", 130));
    }

    #[test]
    fn delete_only_keeps_a_suppression_and_a_tombstone_lifts_it() {
        let mut s = Suppressions::default();
        s.apply("u", request(RequestType::SuppressWithDelete, 100), 100);
        assert_eq!(
            s.apply("u", request(RequestType::DeleteOnly, 200), 200),
            PrivacyOutcome::Unchanged
        );
        assert!(s.is_suppressed("u", 300));
        assert_eq!(
            s.apply("w", request(RequestType::DeleteOnly, 200), 200),
            PrivacyOutcome::Unchanged
        );
        assert!(!s.is_suppressed("w", 300));
        s.apply("v", request(RequestType::Suppress, 100), 100);
        assert_eq!(
            s.apply("v", Ok(PrivacyUpdate::Remove), 300),
            PrivacyOutcome::Lifted
        );
        assert!(!s.is_suppressed("v", 300) && s.is_suppressed("v", 200));
    }
}
