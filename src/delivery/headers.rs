//! Reading an event's headers, and which of them the enforcer writes on.
//!
//! Names are read as bytes, straight from librdkafka: rust-rdkafka's `Headers::iter` panics on
//! a name that is not UTF-8, which Kafka allows, so one such event would stop the pipeline on
//! every restart. Everything the enforcer writes carries the event's headers but those named
//! `consent-enforcer-*`, the prefix of its own: an input header of such a name, set by a
//! producer or an earlier pipeline, would otherwise stand beside (or before) the enforcer's
//! own in a destination, a held record or a dead letter, and mislead whoever reads it.

use std::ffi::CStr;

use rdkafka::bindings as rdsys;
use rdkafka::message::{BorrowedHeaders, Headers, OwnedHeaders};

/// The prefix of every header the enforcer sets; matched without regard to ASCII case.
pub const RESERVED_PREFIX: &str = "consent-enforcer-";

/// One header as librdkafka holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader<'h> {
    pub name: &'h [u8],
    pub value: Option<&'h [u8]>,
}

pub fn is_reserved(name: &[u8]) -> bool {
    name.get(..RESERVED_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes()))
}

/// Every header of `headers`, in order.
pub fn raw(headers: &BorrowedHeaders) -> impl Iterator<Item = RawHeader<'_>> + '_ {
    // `BorrowedHeaders` is rust-rdkafka's view of librdkafka's headers: its address is theirs.
    let native = headers as *const BorrowedHeaders as *const rdsys::rd_kafka_headers_t;
    (0..headers.count()).filter_map(move |index| {
        let mut name = std::ptr::null();
        let mut value = std::ptr::null();
        let mut size = 0;
        // SAFETY: `native` is valid for as long as `headers` is borrowed, and librdkafka
        // hands out a NUL-terminated name and `size` bytes of value owned by it.
        let found = unsafe {
            rdsys::rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size)
        };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return None;
        }
        // SAFETY: as above.
        unsafe {
            Some(RawHeader {
                name: CStr::from_ptr(name).to_bytes(),
                value: (!value.is_null())
                    .then(|| std::slice::from_raw_parts(value.cast::<u8>(), size)),
            })
        }
    })
}

/// How many of `input`'s headers have a reserved name.
pub fn reserved_count(input: Option<&BorrowedHeaders>) -> usize {
    input.map_or(0, |headers| {
        raw(headers).filter(|h| is_reserved(h.name)).count()
    })
}

/// `input`'s headers without those of reserved names (byte for byte, whatever their names);
/// `None` when none remain.
pub fn without_reserved(input: Option<&BorrowedHeaders>) -> Option<OwnedHeaders> {
    let input = input.filter(|h| h.count() > 0)?;
    if reserved_count(Some(input)) == 0 {
        return Some(input.detach());
    }
    let reserved: Vec<std::ffi::CString> = raw(input)
        .filter(|h| is_reserved(h.name))
        .filter_map(|h| std::ffi::CString::new(h.name).ok())
        .collect();
    if reserved.len() == input.count() {
        return None;
    }
    let copy = input.detach();
    let native = copy.as_borrowed() as *const BorrowedHeaders as *mut rdsys::rd_kafka_headers_t;
    for name in &reserved {
        // SAFETY: `native` is the copy's own, which nothing else reads while it is changed;
        // removing every header of a name only shrinks it.
        unsafe {
            rdsys::rd_kafka_header_remove(native, name.as_ptr());
        }
    }
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Header;

    #[test]
    fn reserved_names_are_matched_by_prefix_without_regard_to_case() {
        for name in [
            &b"consent-enforcer-error"[..],
            b"Consent-Enforcer-Source",
            b"CONSENT-ENFORCER-x",
            b"consent-enforcer-",
            b"consent-enforcer-\xff",
        ] {
            assert!(is_reserved(name), "{name:?}");
        }
        for name in [
            &b"consent-enforcer"[..],
            b"x-consent-enforcer-error",
            b"origin",
            b"",
        ] {
            assert!(!is_reserved(name), "{name:?}");
        }
    }

    #[test]
    fn reserved_headers_are_left_out_and_the_rest_kept_in_order() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "origin",
                value: Some("web"),
            })
            .insert(Header {
                key: "Consent-Enforcer-Error",
                value: Some("forged"),
            })
            .insert(Header::<&str> {
                key: "trace",
                value: None,
            });
        assert_eq!(reserved_count(Some(headers.as_borrowed())), 1);
        let kept = without_reserved(Some(headers.as_borrowed())).expect("two kept");
        assert_eq!(
            raw(kept.as_borrowed()).collect::<Vec<_>>(),
            [
                RawHeader {
                    name: b"origin",
                    value: Some(b"web")
                },
                RawHeader {
                    name: b"trace",
                    value: None
                },
            ]
        );
        let only_reserved = OwnedHeaders::new().insert(Header {
            key: "consent-enforcer-source",
            value: Some("x/0/0"),
        });
        assert!(without_reserved(Some(only_reserved.as_borrowed())).is_none());
    }

    /// Headers with a name that is not UTF-8 (rust-rdkafka can only insert text names).
    fn with_bytes_name(name: &[u8], value: &[u8]) -> OwnedHeaders {
        let headers = OwnedHeaders::new().insert(Header {
            key: "origin",
            value: Some("web"),
        });
        let native =
            headers.as_borrowed() as *const BorrowedHeaders as *mut rdsys::rd_kafka_headers_t;
        // SAFETY: the headers are ours; librdkafka copies name and value.
        unsafe {
            rdsys::rd_kafka_header_add(
                native,
                name.as_ptr().cast(),
                name.len() as isize,
                value.as_ptr().cast(),
                value.len() as isize,
            );
        }
        headers
    }

    #[test]
    fn a_name_that_is_not_utf_8_is_read_and_kept_byte_for_byte() {
        let headers = with_bytes_name(b"bad-\xff-name", b"v");
        let names: Vec<&[u8]> = raw(headers.as_borrowed()).map(|h| h.name).collect();
        assert_eq!(names, [&b"origin"[..], b"bad-\xff-name"]);
        assert_eq!(reserved_count(Some(headers.as_borrowed())), 0);
        let reserved = with_bytes_name(b"consent-enforcer-\xff", b"v");
        assert_eq!(reserved_count(Some(reserved.as_borrowed())), 1);
        let kept = without_reserved(Some(reserved.as_borrowed())).expect("origin kept");
        let names: Vec<&[u8]> = raw(kept.as_borrowed()).map(|h| h.name).collect();
        assert_eq!(names, [&b"origin"[..]]);
    }
}
