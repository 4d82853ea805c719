//! A user identifier as the consent table stores it: one heap allocation holding a length
//! prefix and the bytes, behind a thin pointer.
//!
//! A `Box<str>` is a 16-byte fat pointer; this key is 8 bytes, which takes a table entry from
//! 32 to 24 bytes. At a million users the hash table has 2^21 buckets (it grows at 7/8 load),
//! so the entry size decides whether the table fits its budget of 64 bytes per user beyond
//! the key bytes (README, "Performance").

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ptr::NonNull;

/// An owned, immutable user identifier: LEB128 length prefix, then the UTF-8 bytes.
pub struct UserKey(NonNull<u8>);

// SAFETY: the key owns its allocation and never mutates it after construction, like a
// `Box<str>`.
unsafe impl Send for UserKey {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for UserKey {}

/// Bytes of the LEB128 encoding of `len`.
fn prefix_len(len: usize) -> usize {
    let bits = usize::BITS - len.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

fn layout(len: usize) -> Layout {
    // Alignment 1 and the size of a `str` that exists plus at most 10 prefix bytes: invalid
    // only for an identifier within 10 bytes of isize::MAX, which no Kafka record can hold.
    // Never fall back to a smaller layout: `new` writes the whole identifier into it.
    match prefix_len(len)
        .checked_add(len)
        .and_then(|size| Layout::from_size_align(size, 1).ok())
    {
        Some(layout) => layout,
        None => std::process::abort(),
    }
}

impl UserKey {
    pub fn new(id: &str) -> UserKey {
        let layout = layout(id.len());
        // SAFETY: the layout has a non-zero size (the prefix is at least one byte).
        let raw = unsafe { alloc(layout) };
        let Some(start) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        let mut len = id.len();
        let mut at = 0;
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            let more = len != 0;
            // SAFETY: `at` stays below prefix_len(id.len()), inside the allocation.
            unsafe {
                start
                    .as_ptr()
                    .add(at)
                    .write(byte | if more { 0x80 } else { 0 })
            };
            at += 1;
            if !more {
                break;
            }
        }
        // SAFETY: the allocation has room for the prefix (`at` bytes) plus `id.len()` bytes,
        // and a fresh allocation cannot overlap `id`.
        unsafe {
            std::ptr::copy_nonoverlapping(id.as_ptr(), start.as_ptr().add(at), id.len());
        }
        UserKey(start)
    }

    /// (prefix bytes, identifier bytes).
    fn lengths(&self) -> (usize, usize) {
        let mut len = 0usize;
        let mut at = 0;
        loop {
            // SAFETY: the prefix was written by `new` and ends with a byte without the high
            // bit, so every byte read here is inside the allocation.
            let byte = unsafe { self.0.as_ptr().add(at).read() };
            len |= usize::from(byte & 0x7f) << (7 * at);
            at += 1;
            if byte & 0x80 == 0 {
                return (at, len);
            }
        }
    }

    pub fn as_str(&self) -> &str {
        let (at, len) = self.lengths();
        // SAFETY: `new` copied exactly `len` bytes of a valid `str` after the prefix, and
        // they are never changed.
        unsafe {
            let bytes = std::slice::from_raw_parts(self.0.as_ptr().add(at), len);
            std::str::from_utf8_unchecked(bytes)
        }
    }
}

impl Drop for UserKey {
    fn drop(&mut self) {
        let (_, len) = self.lengths();
        // SAFETY: allocated by `new` with this same layout.
        unsafe { dealloc(self.0.as_ptr(), layout(len)) }
    }
}

impl From<&str> for UserKey {
    fn from(id: &str) -> UserKey {
        UserKey::new(id)
    }
}

impl Borrow<str> for UserKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Hash and equality are those of the `str`, so the table can be queried with a `&str`.
impl Hash for UserKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq for UserKey {
    fn eq(&self, other: &UserKey) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for UserKey {}

/// Never prints the identifier: tables may end up in debug output.
impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserKey({} bytes)", self.lengths().1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keeps_identifiers_of_every_length() {
        for len in [0, 1, 126, 127, 128, 300, 16_383, 16_384, 70_000] {
            let id: String = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let key = UserKey::new(&id);
            assert_eq!(key.as_str(), id, "length {len}");
        }
        assert_eq!(prefix_len(0), 1);
        assert_eq!(prefix_len(127), 1);
        assert_eq!(prefix_len(128), 2);
    }

    #[test]
    fn map_is_queried_with_a_str() {
        let mut map: HashMap<UserKey, u32> = HashMap::new();
        map.insert("user-1".into(), 1);
        map.insert("anon-ü".into(), 2);
        assert_eq!(map.get("user-1"), Some(&1));
        assert_eq!(map.get("anon-ü"), Some(&2));
        assert_eq!(map.get("user-2"), None);
        assert_eq!(map.remove("user-1"), Some(1));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn is_eight_bytes_and_debug_hides_the_identifier() {
        assert_eq!(std::mem::size_of::<UserKey>(), 8);
        assert_eq!(format!("{:?}", UserKey::new("secret")), "UserKey(6 bytes)");
    }
}
