//! Allocated bytes, counted: the consent table's memory per user is measured with a counting
//! allocator, not RSS (librdkafka's buffers would swamp it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use consent_enforcer::consent::{ConsentState, ConsentTable, ConsentUpdate};
use consent_enforcer::vocabulary::CategorySet;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes.
pub struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

pub fn allocated() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct TableMemory {
    pub users: u64,
    pub key_bytes_per_user: f64,
    pub bytes_per_user_beyond_key: f64,
    /// States applied per second in process (no Kafka): the table's own share of bootstrap.
    pub states_per_second: f64,
}

/// Fills a table with one state per user and counts what it allocated.
pub fn measure_table(users: u64) -> TableMemory {
    let keys: Vec<String> = (0..users).map(crate::data::user_id).collect();
    let key_bytes: usize = keys.iter().map(String::len).sum();
    let before = allocated();
    let started = Instant::now();
    let mut table = ConsentTable::default();
    for (n, key) in keys.iter().enumerate() {
        let state = ConsentState {
            granted: CategorySet::from_bits(n as u64 & 0x3f),
            updated_at_ms: 1_795_000_000_000 + n as i64,
        };
        table.apply_record(key, Ok(ConsentUpdate::Set(state)), i64::MAX, i64::MAX);
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = allocated().saturating_sub(before);
    let measured = TableMemory {
        users,
        key_bytes_per_user: key_bytes as f64 / users.max(1) as f64,
        bytes_per_user_beyond_key: (bytes as f64 - key_bytes as f64) / users.max(1) as f64,
        states_per_second: users as f64 / seconds.max(1e-9),
    };
    drop(table);
    measured
}
