use super::*;

fn vocabulary() -> Vocabulary {
    let mut vocabulary = Vocabulary::default();
    vocabulary.intern_category("analytics");
    vocabulary.intern_category("advertising");
    vocabulary.intern_integration("Amplitude");
    vocabulary.intern_integration("Google Ads");
    vocabulary
}

fn parse_str(text: &str) -> Result<EventView<'_>, Malformed> {
    let vocabulary = Box::leak(Box::new(vocabulary()));
    parse(Some(text.as_bytes()), 1_000, vocabulary)
}

fn integration_bit(name: &str) -> IntegrationSet {
    let mut set = IntegrationSet::default();
    set.insert(vocabulary().integration(name).unwrap());
    set
}

#[test]
fn reads_identifiers_without_copying() {
    let view = parse_str(r#"{"type":"track","userId":"u1","anonymousId":"a1"}"#).unwrap();
    assert!(matches!(view.user_id, Some(Cow::Borrowed("u1"))));
    assert!(matches!(view.anonymous_id, Some(Cow::Borrowed("a1"))));
    assert_eq!(view.stamp, None);
}

#[test]
fn escaped_identifier_is_decoded() {
    let view = parse_str(r#"{"userId":"u\u00e9\"1"}"#).unwrap();
    assert_eq!(view.user_id.as_deref(), Some("u\u{e9}\"1"));
}

#[test]
fn non_string_or_empty_identifier_counts_as_absent() {
    let view = parse_str(r#"{"userId":42,"anonymousId":"a1"}"#).unwrap();
    assert_eq!(view.user_id, None);
    for id in ["null", "\"\"", "{\"x\":1}", "[\"u\"]", "true", "1.5"] {
        let text = format!(r#"{{"userId":{id}}}"#);
        assert_eq!(parse_str(&text), Err(Malformed::NoIdentifier), "{text}");
    }
}

#[test]
fn classification_follows_the_documented_order() {
    let vocabulary = vocabulary();
    assert_eq!(parse(None, 10, &vocabulary), Err(Malformed::NullValue));
    assert_eq!(
        parse(Some(b"{\"userId\":\"this is too long\"}"), 10, &vocabulary),
        Err(Malformed::TooLarge)
    );
    assert_eq!(parse_str("{\"userId\":"), Err(Malformed::NotJson));
    assert_eq!(parse_str("[1,2]"), Err(Malformed::NotObject));
    assert_eq!(parse_str("\"text\""), Err(Malformed::NotObject));
    assert_eq!(
        parse_str(r#"{"userId":"u1","userId":"u2"}"#),
        Err(Malformed::DuplicateKey)
    );
    assert_eq!(
        parse_str(r#"{"type":"track"}"#),
        Err(Malformed::NoIdentifier)
    );
}

#[test]
fn not_json_wins_over_a_duplicate_found_earlier() {
    assert_eq!(
        parse_str(r#"{"userId":"u1","userId":"u2","x":}"#),
        Err(Malformed::NotJson)
    );
}

#[test]
fn trailing_bytes_and_bad_skipped_fields_are_not_json() {
    assert_eq!(parse_str(r#"{"userId":"u1"} {}"#), Err(Malformed::NotJson));
    assert_eq!(
        parse_str(r#"{"userId":"u1","properties":{"a":tru}}"#),
        Err(Malformed::NotJson)
    );
    let vocabulary = vocabulary();
    let invalid_utf8_in_skipped = b"{\"userId\":\"u1\",\"properties\":{\"a\":\"\xff\"}}";
    assert_eq!(
        parse(Some(invalid_utf8_in_skipped), 1_000, &vocabulary),
        Err(Malformed::NotJson)
    );
}

#[test]
fn unpaired_surrogate_in_any_string_is_not_json() {
    for text in [
        r#"{"userId":"u1","properties":{"title":"Caf\u00e9 \ud83d"}}"#,
        r#"{"userId":"u1","traits":{"em\ud800ail":"a@example.com"}}"#,
        r#"{"userId":"u1","context":{"page":{"title":"\udc00"}}}"#,
        r#"{"userId":"\ud800"}"#,
        r#"["\ud800"]"#,
    ] {
        assert_eq!(parse_str(text), Err(Malformed::NotJson), "{text}");
    }
    let view =
        parse_str(r#"{"userId":"u\ud83d\ude00","properties":{"path":"C:\\ud800"}}"#).unwrap();
    assert_eq!(view.user_id.as_deref(), Some("u\u{1f600}"));
}

#[test]
fn duplicate_keys_only_matter_among_fields_read() {
    assert!(parse_str(r#"{"userId":"u1","event":"a","event":"b"}"#).is_ok());
    for text in [
        r#"{"userId":"u1","context":{"consent":{}},"context":{}}"#,
        r#"{"userId":"u1","context":{"consent":{},"consent":{}}}"#,
        r#"{"userId":"u1","context":{"consent":{"categoryPreferences":{},"categoryPreferences":{}}}}"#,
        r#"{"userId":"u1","context":{"consent":{"categoryPreferences":{"analytics":true,"analytics":false}}}}"#,
        r#"{"userId":"u1","integrations":{"Amplitude":true,"Amplitude":false}}"#,
        r#"{"userId":"u1","integrations":{"All":true,"All":false}}"#,
        r#"{"userId":"u1","anonymousId":"a","anonymousId":"b"}"#,
        r#"{"userId":"u1","us\u0065rId":"u2"}"#,
        r#"{"userId":"u1","timestamp":"2026-11-22T10:00:00Z","timestamp":"2020-01-01T00:00:00Z"}"#,
    ] {
        assert_eq!(parse_str(text), Err(Malformed::DuplicateKey), "{text}");
    }
    assert!(parse_str(r#"{"userId":"u1","integrations":{"Other":1,"Other":2}}"#).is_ok());
    assert!(parse_str(
        r#"{"userId":"u1","context":{"consent":{"categoryPreferences":{"x":1,"x":2}}}}"#
    )
    .is_ok());
}

#[test]
fn timestamp_is_read_when_it_is_rfc3339() {
    let view = parse_str(r#"{"userId":"u1","timestamp":"2026-11-22T10:00:00.250Z"}"#).unwrap();
    assert_eq!(view.timestamp_ms, Some(1_795_341_600_250));
    for other in [
        "\"yesterday\"",
        "\"2026-11-22S10:00:00Z\"",
        "1795341600",
        "null",
        "{}",
    ] {
        let text = format!(r#"{{"userId":"u1","timestamp":{other}}}"#);
        assert_eq!(parse_str(&text).unwrap().timestamp_ms, None, "{text}");
    }
}

#[test]
fn consent_stamp_grants_only_json_true() {
    let view = parse_str(
            r#"{"userId":"u1","context":{"ip":"1.2.3.4","consent":{"categoryPreferences":{"analytics":true,"advertising":"yes"}}}}"#,
        )
        .unwrap();
    assert_eq!(view.stamp, Some(CategorySet::from_bits(0b01)));
}

#[test]
fn non_object_stamp_is_present_and_grants_nothing() {
    let view =
        parse_str(r#"{"userId":"u1","context":{"consent":{"categoryPreferences":null}}}"#).unwrap();
    assert_eq!(view.stamp, Some(CategorySet::EMPTY));
}

#[test]
fn stamp_is_absent_without_category_preferences() {
    for text in [
        r#"{"userId":"u1","context":{"consent":{}}}"#,
        r#"{"userId":"u1","context":{"consent":"granted"}}"#,
        r#"{"userId":"u1","context":[]}"#,
        r#"{"userId":"u1","categoryPreferences":{"analytics":true}}"#,
    ] {
        assert_eq!(parse_str(text).unwrap().stamp, None, "{text}");
    }
}

#[test]
fn out_of_range_number_as_identifier_counts_as_absent() {
    assert_eq!(
        parse_str(r#"{"userId":1e400}"#),
        Err(Malformed::NoIdentifier)
    );
    let view = parse_str(r#"{"userId":-1e400,"anonymousId":"a\u00e91"}"#).unwrap();
    assert_eq!(view.user_id, None);
    assert_eq!(view.anonymous_id.as_deref(), Some("a\u{e9}1"));
}

#[test]
fn out_of_range_number_in_a_skipped_field_is_valid_json() {
    let view =
        parse_str(r#"{"userId":"u1","properties":{"price":1e400,"big":[1E+99999999999,-1e309]}}"#)
            .unwrap();
    assert_eq!(view.user_id.as_deref(), Some("u1"));
}

#[test]
fn out_of_range_number_at_the_top_level_is_not_an_object() {
    assert_eq!(parse_str("1e400"), Err(Malformed::NotObject));
    let digits = format!("[{}]", "9".repeat(400));
    assert_eq!(parse_str(&digits), Err(Malformed::NotObject));
}

#[test]
fn out_of_range_numbers_in_read_fields_count_as_wrong_types() {
    let view = parse_str(
            r#"{"userId":"u1","timestamp":1e400,"integrations":{"All":1e400,"Amplitude":1e400,"Google Ads":false},"context":{"consent":{"categoryPreferences":{"analytics":1e400,"advertising":true}}}}"#,
        )
        .unwrap();
    assert_eq!(view.timestamp_ms, None);
    assert!(!view.integrations.all_false);
    assert_eq!(view.integrations.enabled, IntegrationSet::default());
    assert_eq!(view.integrations.disabled, integration_bit("Google Ads"));
    assert_eq!(view.stamp, Some(CategorySet::from_bits(0b10)));
    let view = parse_str(r#"{"userId":"u1","context":{"consent":{"categoryPreferences":1e400}}}"#)
        .unwrap();
    assert_eq!(view.stamp, Some(CategorySet::EMPTY));
    assert_eq!(
        parse_str(r#"{"userId":"u1","context":1e400}"#)
            .unwrap()
            .stamp,
        None
    );
}

#[test]
fn event_with_an_out_of_range_number_is_still_classified_in_order() {
    assert_eq!(
        parse_str(r#"{"userId":1e400,"x":}"#),
        Err(Malformed::NotJson)
    );
    assert_eq!(parse_str(r#"{"userId":1e400.5}"#), Err(Malformed::NotJson));
    assert_eq!(
        parse_str(r#"{"userId":1e400,"userId":"u1"}"#),
        Err(Malformed::DuplicateKey)
    );
}

#[test]
fn integrations_are_read_by_exact_name() {
    let view = parse_str(
            r#"{"userId":"u1","integrations":{"All":false,"Amplitude":{"session":1},"Google Ads":false,"amplitude":false}}"#,
        )
        .unwrap();
    assert!(view.integrations.all_false);
    assert_eq!(view.integrations.enabled, integration_bit("Amplitude"));
    assert_eq!(view.integrations.disabled, integration_bit("Google Ads"));
}

#[test]
fn non_boolean_integration_values_are_neither_on_nor_off() {
    let view =
        parse_str(r#"{"userId":"u1","integrations":{"All":"false","Amplitude":"no"}}"#).unwrap();
    assert_eq!(view.integrations, Integrations::default());
}

#[test]
fn non_object_integrations_say_nothing() {
    let view = parse_str(r#"{"userId":"u1","integrations":false}"#).unwrap();
    assert_eq!(view.integrations, Integrations::default());
}
