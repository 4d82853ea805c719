//! Locking the mutexes that librdkafka's `Sync` contexts force on state only the pipeline
//! thread touches (its callbacks run inside that thread's polls).

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the data of a poisoned one: a panic while holding it already ends
/// the pipeline, and the data is still usable for the stop.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
