//! Oracles for the fuzz targets, written from the README's contract ("The decision",
//! "Consent records", "Configuration") and sharing no parsing logic with `src`: a small JSON
//! parser that keeps every object entry in order (so duplicates stay visible), an RFC 3339
//! reader, and the README's tables for events and consent records.
//!
//! Compiled into the fuzz targets (`fuzz/fuzz_targets/`) and into `tests/fuzz_regressions.rs`,
//! which replays `fuzz/regressions/<target>/` in a normal `cargo test`. Each `check` panics,
//! naming the input, when `src` disagrees with its oracle.

pub mod config;
pub mod event;
pub mod json;
pub mod record;
pub mod rfc3339;

/// The input, printable, for a failure message.
pub fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}
