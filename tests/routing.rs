//! The decision rules, end to end: events in, records on destination topics out.

mod common;

use common::*;

fn analytics_and_ads() -> Vec<Destination> {
    vec![
        Destination::new("amplitude", &["analytics"]).integration_names(&["Amplitude"]),
        Destination::new("ads", &["advertising"]).integration_names(&["Google Ads"]),
    ]
}

#[test]
fn granted_category_is_delivered_and_denied_one_is_not() {
    let s = Scenario::new("granted", analytics_and_ads());
    s.send_consent(
        "u1",
        &consent(&["analytics"], &["advertising"], "2026-11-22T10:00:00Z"),
    );
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert!(s.delivered("ads").is_empty());
    assert_eq!(
        enforcer
            .metric(r#"consent_enforcer_events_dropped_total{destination="ads",reason="denied"}"#),
        1.0
    );
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_events_delivered_total{destination="amplitude"}"#),
        1.0
    );
}

#[test]
fn user_without_consent_is_dropped_when_missing_is_deny() {
    let s = Scenario::new("no-consent", analytics_and_ads());
    let enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
    assert!(s.delivered("ads").is_empty());
    assert_eq!(
        enforcer.metric(
            r#"consent_enforcer_events_dropped_total{destination="amplitude",reason="no_consent"}"#
        ),
        1.0
    );
}

#[test]
fn user_without_consent_is_delivered_when_missing_is_allow() {
    let mut s = Scenario::new("allow-missing", analytics_and_ads());
    s.consent_extra = "when_missing = \"allow\"".to_owned();
    let _enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert_eq!(message_ids(&s.delivered("ads")), ["m1"]);
}

#[test]
fn present_state_granting_nothing_is_not_overridden_by_allow() {
    let mut s = Scenario::new("allow-present", analytics_and_ads());
    s.consent_extra = "when_missing = \"allow\"".to_owned();
    s.send_consent("u1", &consent(&[], &["analytics"], "2026-11-22T10:00:00Z"));
    let _enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
    assert!(s.delivered("ads").is_empty());
}

#[test]
fn strictly_necessary_destination_always_receives() {
    let s = Scenario::new(
        "necessary",
        vec![
            Destination::new("warehouse", &[]),
            Destination::new("amplitude", &["analytics"]),
        ],
    );
    let _enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("warehouse")), ["m1"]);
    assert!(s.delivered("amplitude").is_empty());
}

#[test]
fn match_all_needs_every_category_and_match_any_one() {
    let s = Scenario::new(
        "match-modes",
        vec![
            Destination::new("all", &["analytics", "advertising"]),
            Destination::new("any", &["analytics", "advertising"]).match_any(),
        ],
    );
    s.send_consent(
        "u1",
        &consent(&["analytics"], &["advertising"], "2026-11-22T10:00:00Z"),
    );
    let _enforcer = s.start_ready();
    s.send_events(&[("u1", &track("u1", "m1"))]);
    s.wait_processed();
    assert!(s.delivered("all").is_empty());
    assert_eq!(message_ids(&s.delivered("any")), ["m1"]);
}

#[test]
fn integration_set_to_false_drops_that_destination() {
    let s = Scenario::new(
        "integration-false",
        vec![
            Destination::new("warehouse", &[]).integration_names(&["Warehouse"]),
            Destination::new("amplitude", &["analytics"]).integration_names(&["Amplitude"]),
        ],
    );
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    let enforcer = s.start_ready();
    s.send_events(&[(
        "u1",
        r#"{"type":"track","userId":"u1","messageId":"m1","integrations":{"Warehouse":false,"amplitude":false}}"#,
    )]);
    s.wait_processed();
    assert!(s.delivered("warehouse").is_empty());
    // Names match exactly: "amplitude" is not "Amplitude".
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert_eq!(
        enforcer.metric(r#"consent_enforcer_events_dropped_total{destination="warehouse",reason="integrations"}"#),
        1.0
    );
}

#[test]
fn all_false_drops_destinations_not_explicitly_enabled() {
    let s = Scenario::new(
        "all-false",
        vec![
            Destination::new("amplitude", &["analytics"]).integration_names(&["Amplitude"]),
            Destination::new("mixpanel", &["analytics"]).integration_names(&["Mixpanel"]),
            Destination::new("braze", &["analytics"]).integration_names(&["Braze"]),
        ],
    );
    s.send_consent("u1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    let _enforcer = s.start_ready();
    s.send_events(&[(
        "u1",
        r#"{"type":"track","userId":"u1","messageId":"m1","integrations":{"All":false,"Amplitude":true,"Mixpanel":{"key":"x"}}}"#,
    )]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert_eq!(message_ids(&s.delivered("mixpanel")), ["m1"]);
    assert!(s.delivered("braze").is_empty());
}

#[test]
fn integration_enabled_does_not_override_missing_consent() {
    let s = Scenario::new(
        "integration-true",
        vec![Destination::new("amplitude", &["analytics"]).integration_names(&["Amplitude"])],
    );
    s.send_consent("u1", &consent(&[], &["analytics"], "2026-11-22T10:00:00Z"));
    let _enforcer = s.start_ready();
    s.send_events(&[(
        "u1",
        r#"{"type":"track","userId":"u1","messageId":"m1","integrations":{"Amplitude":true}}"#,
    )]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
}

#[test]
fn event_stamp_alone_grants_when_no_state_is_stored() {
    let s = Scenario::new("stamp-only", analytics_and_ads());
    let _enforcer = s.start_ready();
    s.send_events(&[(
        "u1",
        r#"{"type":"track","userId":"u1","messageId":"m1","context":{"consent":{"categoryPreferences":{"analytics":true,"advertising":false}}}}"#,
    )]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert!(s.delivered("ads").is_empty());
}

#[test]
fn every_present_source_must_grant() {
    let s = Scenario::new("both-sources", analytics_and_ads());
    s.send_consent(
        "u1",
        &consent(&["analytics", "advertising"], &[], "2026-11-22T10:00:00Z"),
    );
    let _enforcer = s.start_ready();
    // The stored state grants both; the stamp only analytics.
    s.send_events(&[(
        "u1",
        r#"{"type":"track","userId":"u1","messageId":"m1","context":{"consent":{"categoryPreferences":{"analytics":true}}}}"#,
    )]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert!(s.delivered("ads").is_empty());
}

#[test]
fn non_object_stamp_is_present_and_grants_nothing() {
    let mut s = Scenario::new("stamp-not-object", analytics_and_ads());
    s.consent_extra = "when_missing = \"allow\"".to_owned();
    let _enforcer = s.start_ready();
    s.send_events(&[(
        "u1",
        r#"{"type":"track","userId":"u1","messageId":"m1","context":{"consent":{"categoryPreferences":"all"}}}"#,
    )]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
}

#[test]
fn newer_anonymous_state_supersedes_older_user_state() {
    let s = Scenario::new("anonymous-newer", analytics_and_ads());
    s.send_consent(
        "u1",
        &consent(&["analytics"], &["advertising"], "2026-11-22T10:00:00Z"),
    );
    s.send_consent(
        "a1",
        &consent(&["advertising"], &["analytics"], "2026-11-22T11:00:00Z"),
    );
    let _enforcer = s.start_ready();
    s.send_events(&[(
        "u1",
        r#"{"type":"track","userId":"u1","anonymousId":"a1","messageId":"m1"}"#,
    )]);
    s.wait_processed();
    assert!(s.delivered("amplitude").is_empty());
    assert_eq!(message_ids(&s.delivered("ads")), ["m1"]);
}

#[test]
fn user_state_wins_a_tie_with_anonymous_state() {
    let s = Scenario::new("user-tie", analytics_and_ads());
    s.send_consent(
        "u1",
        &consent(&["analytics"], &["advertising"], "2026-11-22T10:00:00Z"),
    );
    s.send_consent(
        "a1",
        &consent(&["advertising"], &["analytics"], "2026-11-22T10:00:00Z"),
    );
    let _enforcer = s.start_ready();
    s.send_events(&[(
        "u1",
        r#"{"type":"track","userId":"u1","anonymousId":"a1","messageId":"m1"}"#,
    )]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
    assert!(s.delivered("ads").is_empty());
}

#[test]
fn anonymous_id_alone_finds_its_state() {
    let s = Scenario::new("anonymous-only", analytics_and_ads());
    s.send_consent("a1", &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"));
    let _enforcer = s.start_ready();
    s.send_events(&[
        (
            "a1",
            r#"{"type":"page","anonymousId":"a1","messageId":"m1"}"#,
        ),
        // A non-string userId counts as absent, not as malformed.
        (
            "a1",
            r#"{"type":"page","userId":17,"anonymousId":"a1","messageId":"m2"}"#,
        ),
    ]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1", "m2"]);
    assert!(s.dead_letters().is_empty());
}

#[test]
fn escaped_identifier_matches_its_decoded_key() {
    let s = Scenario::new("escaped-id", analytics_and_ads());
    s.send_consent(
        "user\"é",
        &consent(&["analytics"], &[], "2026-11-22T10:00:00Z"),
    );
    let _enforcer = s.start_ready();
    s.send_events(&[(
        "k",
        r#"{"type":"page","userId":"user\"\u00e9","messageId":"m1"}"#,
    )]);
    s.wait_processed();
    assert_eq!(message_ids(&s.delivered("amplitude")), ["m1"]);
}
