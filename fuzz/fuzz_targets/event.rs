//! `cargo +nightly fuzz run event`: see `oracle/event.rs` for what is checked.
#![no_main]

#[path = "../oracle/mod.rs"]
#[allow(dead_code)] // each target uses one of the oracles
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| oracle::event::check(data));
