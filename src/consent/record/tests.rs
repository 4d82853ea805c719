use super::*;

#[test]
fn a_key_longer_than_the_cap_is_rejected() {
    let at_cap = "k".repeat(MAX_IDENTIFIER_BYTES);
    assert_eq!(parse_key(Some(at_cap.as_bytes())), Ok(at_cap.as_str()));
    let over = "k".repeat(MAX_IDENTIFIER_BYTES + 1);
    assert_eq!(parse_key(Some(over.as_bytes())), Err(Rejection::KeyTooLong));
}

fn vocabulary() -> Vocabulary {
    let mut vocabulary = Vocabulary::default();
    vocabulary.intern_category("analytics");
    vocabulary.intern_category("advertising");
    vocabulary
}

fn parse(value: &str) -> Result<ConsentUpdate, Rejection> {
    parse_value(Some(value.as_bytes()), 42, &vocabulary())
}

fn granted(update: Result<ConsentUpdate, Rejection>) -> (u64, i64) {
    match update {
        Ok(ConsentUpdate::Set(state)) => (state.granted.bits(), state.updated_at_ms),
        other => panic!("expected a state, got {other:?}"),
    }
}

#[test]
fn only_json_true_grants() {
    let value = r#"{"categoryPreferences":{"analytics":true,"advertising":"true","other":true},"updatedAt":"2026-11-22T10:00:00Z"}"#;
    assert_eq!(granted(parse(value)), (0b01, 1_795_341_600_000));
}

#[test]
fn updated_at_is_compared_at_millisecond_precision() {
    let value = r#"{"categoryPreferences":{},"updatedAt":"2026-11-22T10:00:00.123999+01:00"}"#;
    assert_eq!(granted(parse(value)).1, 1_795_341_600_000 - 3_600_000 + 123);
}

#[test]
fn rfc3339_separates_date_and_time_with_t_or_a_space() {
    for text in [
        "2026-11-22T10:00:00Z",
        "2026-11-22t10:00:00z",
        "2026-11-22 10:00:00Z",
    ] {
        assert_eq!(parse_rfc3339_ms(text), Some(1_795_341_600_000), "{text}");
    }
    for text in [
        "2026-11-22S10:00:00Z",
        "2026-11-22_10:00:00Z",
        "2026-11-22010:00:00Z",
    ] {
        assert_eq!(parse_rfc3339_ms(text), None, "{text}");
    }
    assert_eq!(
        parse(r#"{"categoryPreferences":{},"updatedAt":"2026-11-22S10:00:00Z"}"#),
        Err(Rejection::BadUpdatedAt)
    );
}

#[test]
fn missing_updated_at_takes_the_record_time() {
    assert_eq!(
        granted(parse(r#"{"categoryPreferences":{"advertising":true}}"#)),
        (0b10, 42)
    );
    assert_eq!(
        granted(parse(r#"{"categoryPreferences":{},"updatedAt":null}"#)).1,
        42
    );
}

#[test]
fn null_value_is_a_tombstone() {
    assert_eq!(
        parse_value(None, 0, &vocabulary()),
        Ok(ConsentUpdate::Remove)
    );
}

#[test]
fn malformed_values_are_rejected_by_reason() {
    assert_eq!(parse("{"), Err(Rejection::NotJson));
    assert_eq!(
        parse(r#"{"categoryPreferences":{}} x"#),
        Err(Rejection::NotJson)
    );
    assert_eq!(parse("[1]"), Err(Rejection::NotObject));
    assert_eq!(parse("{}"), Err(Rejection::BadPreferences));
    assert_eq!(
        parse(r#"{"categoryPreferences":true}"#),
        Err(Rejection::BadPreferences)
    );
    assert_eq!(
        parse(r#"{"categoryPreferences":{},"updatedAt":"yesterday"}"#),
        Err(Rejection::BadUpdatedAt)
    );
    assert_eq!(
        parse(r#"{"categoryPreferences":{},"updatedAt":17}"#),
        Err(Rejection::BadUpdatedAt)
    );
    assert_eq!(
        parse(r#"{"categoryPreferences":{"analytics":true,"analytics":false}}"#),
        Err(Rejection::DuplicateKey)
    );
    assert_eq!(
        parse_value(
            Some(b"{\"categoryPreferences\":{\"x\":\"\xff\"}}"),
            0,
            &vocabulary()
        ),
        Err(Rejection::NotJson)
    );
}

#[test]
fn out_of_range_category_value_grants_nothing_and_keeps_the_record() {
    let value = r#"{"categoryPreferences":{"analytics":1e400,"advertising":true},"updatedAt":"2026-11-22T10:00:00Z","version":-1e999}"#;
    assert_eq!(granted(parse(value)), (0b10, 1_795_341_600_000));
}

#[test]
fn out_of_range_updated_at_is_not_rfc3339() {
    assert_eq!(
        parse(r#"{"categoryPreferences":{},"updatedAt":1e400}"#),
        Err(Rejection::BadUpdatedAt)
    );
}

#[test]
fn out_of_range_number_where_an_object_belongs_is_rejected_by_reason() {
    assert_eq!(parse("1e400"), Err(Rejection::NotObject));
    assert_eq!(
        parse(r#"{"categoryPreferences":1e400}"#),
        Err(Rejection::BadPreferences)
    );
    assert_eq!(
        parse(r#"{"categoryPreferences":{"analytics":1e400x}}"#),
        Err(Rejection::NotJson)
    );
}

#[test]
fn unpaired_surrogate_in_any_string_is_not_json() {
    assert_eq!(
        parse(r#"{"categoryPreferences":{"analytics":true},"source":"cmp \ud800"}"#),
        Err(Rejection::NotJson)
    );
}

#[test]
fn bad_keys_are_rejected() {
    assert_eq!(parse_key(None), Err(Rejection::BadKey));
    assert_eq!(parse_key(Some(b"\xff")), Err(Rejection::BadKey));
    assert_eq!(parse_key(Some(b"user-1")), Ok("user-1"));
}

#[test]
fn state_from_the_edges_of_rfc3339_years_is_encoded_so_that_it_reads_back() {
    let vocabulary = vocabulary();
    for updated_at in [
        "0000-01-01T00:00:00+01:00",
        "0000-01-01T00:00:00.001+23:59",
        "9999-12-31T23:59:59.999-23:59",
        "0000-01-01T00:00:00Z",
    ] {
        let value = format!(r#"{{"categoryPreferences":{{}},"updatedAt":"{updated_at}"}}"#);
        let Ok(ConsentUpdate::Set(state)) = parse(&value) else {
            panic!("{value} is valid");
        };
        let bytes = encode_value(&state, &vocabulary);
        assert_eq!(
            parse_value(Some(&bytes), 0, &vocabulary),
            Ok(ConsentUpdate::Set(state)),
            "{updated_at} written as {}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn a_failed_closed_state_is_re_published_as_a_malformed_record() {
    let value = encode_value(&ConsentState::FAILED_CLOSED, &vocabulary());
    assert_eq!(
        parse(std::str::from_utf8(&value).unwrap()),
        Err(Rejection::BadPreferences)
    );
}

#[test]
fn encoded_state_parses_back_to_itself() {
    let vocabulary = vocabulary();
    let state = ConsentState {
        granted: CategorySet::from_bits(0b10),
        updated_at_ms: 1_795_341_600_123,
    };
    let bytes = encode_value(&state, &vocabulary);
    assert_eq!(
        parse_value(Some(&bytes), 0, &vocabulary),
        Ok(ConsentUpdate::Set(state))
    );
}
