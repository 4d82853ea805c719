//! Replays the fuzz targets' inputs without the fuzzer: every file under
//! `fuzz/regressions/<target>/` (inputs that once crashed or disagreed) and
//! `fuzz/corpus/<target>/` (the seeds) goes through the same checks as in `fuzz/fuzz_targets/`,
//! against the oracles in `fuzz/oracle/`. No broker needed.

#[path = "../fuzz/oracle/mod.rs"]
mod oracle;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for dir in ["regressions", "corpus"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|entry| entry.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no inputs for the {target} target");
}

#[test]
fn event_inputs_are_classified_as_the_readme_says() {
    replay("event", oracle::event::check);
}

#[test]
fn consent_record_inputs_are_read_as_the_readme_says() {
    replay("consent_record", oracle::record::check);
}

#[test]
fn config_inputs_never_panic_and_errors_are_one_line() {
    replay("config", oracle::config::check);
}

#[test]
fn oracle_reads_rfc3339_as_the_rfc_does() {
    use oracle::rfc3339::to_unix_ms;
    assert_eq!(to_unix_ms("2026-11-22T10:00:00Z"), Some(1_795_341_600_000));
    assert_eq!(
        to_unix_ms("2026-11-22t11:00:00.1239+01:00"),
        Some(1_795_341_600_123)
    );
    assert_eq!(to_unix_ms("1969-12-31 23:59:59.9995z"), Some(-1));
    assert_eq!(to_unix_ms("1970-01-01T00:00:00-00:30"), Some(1_800_000));
    assert_eq!(to_unix_ms("2016-12-31T23:59:60Z"), Some(1_483_228_799_999));
    assert_eq!(to_unix_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
    for bad in [
        "2023-02-29T00:00:00Z",
        "2026-11-22T10:00:60Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22X10:00:00Z",
        "2026-11-22T10:00:00",
        "2026-11-22T10:00:00.Z",
        "2026-11-22T10:00:00+24:00",
        "2026-11-22T10:00Z",
        "+2026-11-22T10:00:00Z",
    ] {
        assert_eq!(to_unix_ms(bad), None, "{bad}");
    }
}

#[test]
fn oracle_json_keeps_duplicates_and_refuses_what_rfc8259_refuses() {
    use oracle::json::{parse, Error, Json};
    assert_eq!(
        parse(br#" {"a":1,"a":[true,null,-0.5e+3]} "#),
        Ok(Json::Object(vec![
            ("a".to_owned(), Json::Number),
            (
                "a".to_owned(),
                Json::Array(vec![Json::Bool(true), Json::Null, Json::Number])
            ),
        ]))
    );
    assert_eq!(
        parse(br#""\ud83d\ude00\u00e9""#),
        Ok(Json::String("\u{1f600}\u{e9}".to_owned()))
    );
    assert_eq!(parse(b"1e400"), Ok(Json::Number));
    for bad in [
        &b"01"[..],
        b"[1,]",
        b"{\"a\" 1}",
        b"\"\\ud800\"",
        b"\"\\udc00\"",
        b"\"\x01\"",
        b"\"\xff\"",
        b"tru",
        b"{} {}",
        b"\xef\xbb\xbf{}",
        b"",
    ] {
        assert_eq!(parse(bad), Err(Error::Invalid), "{}", oracle::show(bad));
    }
}
