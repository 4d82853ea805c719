use super::*;

const MINIMAL: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
[input]
topics = ["events.raw"]
[consent]
topic = "consent.states"
[dead_letter]
topic = "events.dead-letter"
[[destination]]
name = "amplitude"
topic = "dest.amplitude"
categories = ["analytics"]
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    let config = Config::parse(text, "test.toml")?;
    config.validate()?;
    Ok(config)
}

fn error_of(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("config should have been rejected"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.kafka.group_id, "consent-enforcer");
    assert_eq!(config.input.max_event_bytes, 1_000_000);
    assert_eq!(config.consent.when_missing(), WhenMissing::Deny);
    assert_eq!(config.metrics.listen, "127.0.0.1:9464");
    assert_eq!(
        config.delivery.drain_timeout().value,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(
        config.kafka.startup_timeout().value,
        std::time::Duration::from_secs(15)
    );
    assert_eq!(
        config.consent.max_wait().value,
        std::time::Duration::from_millis(1_000)
    );
    assert_eq!(
        config.consent.max_staleness().value,
        std::time::Duration::from_millis(30_000)
    );
    assert_eq!(
        config.delivery.commit_interval().value,
        std::time::Duration::from_millis(1_000)
    );
    assert_eq!(
        config.delivery.transaction_interval().value,
        std::time::Duration::from_millis(100)
    );
    assert_eq!(config.delivery.guarantee, Guarantee::AtLeastOnce);
    let dest = &config.destinations[0];
    assert_eq!(dest.match_mode, MatchMode::All);
    assert_eq!(dest.integration_names(), vec!["amplitude".to_owned()]);
}

#[test]
fn unknown_key_is_named() {
    let text = MINIMAL.replace("[input]", "[input]\nbogus_key = 1");
    let err = error_of(&text);
    assert!(err.contains("bogus_key"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn destination_without_categories_is_rejected() {
    let err = error_of(&MINIMAL.replace("categories = [\"analytics\"]", ""));
    assert!(err.contains("categories"), "{err}");
}

#[test]
fn duplicate_destination_name_is_rejected() {
    let text = format!(
        "{MINIMAL}\n[[destination]]\nname = \"amplitude\"\ntopic = \"dest.other\"\ncategories = []\n"
    );
    let err = error_of(&text);
    assert!(err.contains("destination[1].name"), "{err}");
}

#[test]
fn destination_name_with_a_comma_is_rejected() {
    let err = error_of(&MINIMAL.replace("name = \"amplitude\"", "name = \"amp,litude\""));
    assert!(err.contains("destination[0].name"), "{err}");
    assert!(err.contains("comma"), "{err}");
}

#[test]
fn zero_drain_timeout_is_rejected() {
    let err = error_of(&format!("{MINIMAL}\n[delivery]\ndrain_timeout_secs = 0\n"));
    assert!(err.contains("delivery.drain_timeout_secs"), "{err}");
}

#[test]
fn duplicate_destination_topic_is_rejected() {
    let text = format!(
        "{MINIMAL}\n[[destination]]\nname = \"other\"\ntopic = \"dest.amplitude\"\ncategories = []\n"
    );
    let err = error_of(&text);
    assert!(err.contains("destination[1].topic"), "{err}");
    assert!(err.contains("destination[0].topic"), "{err}");
}

#[test]
fn topic_in_two_roles_is_rejected() {
    let err =
        error_of(&MINIMAL.replace("topic = \"events.dead-letter\"", "topic = \"events.raw\""));
    assert!(err.contains("dead_letter.topic"), "{err}");
    assert!(err.contains("input.topics[0]"), "{err}");
}

#[test]
fn bad_enum_value_is_named() {
    let err = error_of(&MINIMAL.replace(
        "topic = \"consent.states\"",
        "topic = \"consent.states\"\nwhen_missing = \"maybe\"",
    ));
    assert!(err.contains("maybe"), "{err}");
}

#[test]
fn bad_listen_address_is_named() {
    let err = error_of(&format!("{MINIMAL}\n[metrics]\nlisten = \"nowhere\"\n"));
    assert!(err.contains("metrics.listen"), "{err}");
}

#[test]
fn guarantee_critical_properties_cannot_be_overridden() {
    let err = error_of(&MINIMAL.replace(
        "bootstrap_servers = \"127.0.0.1:9092\"",
        "bootstrap_servers = \"127.0.0.1:9092\"\n[kafka.properties]\n\"enable.auto.commit\" = \"true\"",
    ));
    assert!(err.contains("enable.auto.commit"), "{err}");
}

#[test]
fn durations_carry_their_unit() {
    for (text, ms) in [
        ("500ms", 500),
        ("30s", 30_000),
        ("10m", 600_000),
        ("2h", 7_200_000),
        ("7d", 604_800_000),
    ] {
        assert_eq!(text.parse::<Duration>().unwrap().as_millis(), ms, "{text}");
    }
    for bad in ["10", "m", "10 weeks", "-1s", ""] {
        assert!(bad.parse::<Duration>().is_err(), "{bad}");
    }
    let err = error_of(&MINIMAL.replace(
        "topic = \"consent.states\"",
        "topic = \"consent.states\"\nhistory_window = \"7\"",
    ));
    assert!(
        err.contains("history_window") || err.contains("unit"),
        "{err}"
    );
}

#[test]
fn staleness_shorter_than_wait_names_both_fields() {
    let err = error_of(&MINIMAL.replace(
        "topic = \"consent.states\"",
        "topic = \"consent.states\"\nmax_wait_ms = 5000\nmax_staleness_ms = 1000",
    ));
    assert!(
        err.contains("consent.max_staleness_ms") && err.contains("consent.max_wait_ms"),
        "{err}"
    );
}

#[test]
fn all_is_not_an_integration_name() {
    let err = error_of(&MINIMAL.replace(
        "name = \"amplitude\"",
        "name = \"amplitude\"\nintegration_names = [\"All\"]",
    ));
    assert!(err.contains("integration_names"), "{err}");
}

#[test]
fn duration_keys_and_their_integer_aliases_set_the_same_thing() {
    let with = |kafka: &str, consent: &str, delivery: &str| {
        load(
            &MINIMAL
                .replace("[kafka]\n", &format!("[kafka]\n{kafka}\n"))
                .replace("[consent]\n", &format!("[consent]\n{consent}\n"))
                .replace("[input]", &format!("[delivery]\n{delivery}\n[input]")),
        )
    };
    let new = with(
        "startup_timeout = \"8s\"",
        "max_wait = \"250ms\"\nmax_staleness = \"2m\"",
        "commit_interval = \"2s\"\ndrain_timeout = \"1m 30s\"\ntransaction_interval = \"50ms\"",
    )
    .unwrap();
    let old = with(
        "startup_timeout_secs = 8",
        "max_wait_ms = 250\nmax_staleness_ms = 120000",
        "commit_interval_ms = 2000\ndrain_timeout_secs = 90\ntransaction_interval_ms = 50",
    )
    .unwrap();
    for config in [&new, &old] {
        let ms = |d: std::time::Duration| d.as_millis();
        assert_eq!(ms(config.kafka.startup_timeout().value), 8_000);
        assert_eq!(ms(config.consent.max_wait().value), 250);
        assert_eq!(ms(config.consent.max_staleness().value), 120_000);
        assert_eq!(ms(config.delivery.commit_interval().value), 2_000);
        assert_eq!(ms(config.delivery.drain_timeout().value), 90_000);
        assert_eq!(ms(config.delivery.transaction_interval().value), 50);
    }
    // Messages name the key the config used.
    assert_eq!(
        new.delivery.drain_timeout().to_string(),
        "delivery.drain_timeout = \"1m 30s\""
    );
    assert_eq!(
        old.delivery.drain_timeout().to_string(),
        "delivery.drain_timeout_secs = 90"
    );
}

#[test]
fn a_duration_set_under_both_names_or_without_a_unit_is_refused() {
    let err = error_of(&MINIMAL.replace(
        "[input]",
        "[delivery]\ndrain_timeout = \"10s\"\ndrain_timeout_secs = 10\n[input]",
    ));
    assert!(
        err.contains("delivery.drain_timeout") && err.contains("not both"),
        "{err}"
    );
    let err = error_of(&MINIMAL.replace("[input]", "[delivery]\ncommit_interval = 5\n[input]"));
    assert!(err.contains("commit_interval"), "{err}");
    let err = error_of(&MINIMAL.replace(
        "topic = \"consent.states\"",
        "topic = \"consent.states\"\nmax_wait = \"5s\"\nmax_staleness = \"1s\"",
    ));
    assert!(
        err.contains("consent.max_staleness") && err.contains("consent.max_wait = \"5s\""),
        "{err}"
    );
}

#[test]
fn a_value_of_the_wrong_kind_names_its_field() {
    let err = error_of(&MINIMAL.replace("[input]", "[hold]\nmax_age = \"10M\"\n[input]"));
    assert!(err.contains("hold.max_age"), "{err}");
    let err = error_of(&MINIMAL.replace("[input]", "[delivery]\ncommit_interval = 5\n[input]"));
    assert!(err.contains("delivery.commit_interval"), "{err}");
    assert!(err.contains("<redacted>"), "the value is not quoted: {err}");
}

#[test]
fn consent_format_aliases_and_channel_default_to_what_configs_did_before() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.consent.format, ConsentFormat::Json);
    assert!(config.consent.aliases.is_empty());
    assert_eq!(config.destinations[0].channel, None);
    let text = MINIMAL
        .replace(
            "topic = \"consent.states\"",
            "topic = \"consent.states\"\nformat = \"auto\"\n[consent.aliases]\nC0002 = \"analytics\"",
        )
        .replace("categories = [\"analytics\"]", "categories = []\nchannel = \"email\"");
    let config = load(&text).unwrap();
    assert_eq!(config.consent.format, ConsentFormat::Auto);
    assert_eq!(config.consent.aliases["C0002"], "analytics");
    assert_eq!(config.destinations[0].channel.as_deref(), Some("email"));
}

#[test]
fn a_wrong_format_alias_or_channel_is_an_error_naming_the_field() {
    let consent = |extra: &str| {
        MINIMAL.replace(
            "topic = \"consent.states\"",
            &format!("topic = \"consent.states\"\n{extra}"),
        )
    };
    assert!(error_of(&consent("format = \"xml\"")).contains("consent.format"));
    let err = error_of(&consent("[consent.aliases]\nanalytics = \"advertising\""));
    assert!(
        err.contains("consent.aliases") && err.contains("analytics"),
        "{err}"
    );
    let err = error_of(&consent(
        "[consent.aliases]\nC1 = \"C2\"\nC2 = \"analytics\"",
    ));
    assert!(err.contains("consent.aliases.\"C1\""), "{err}");
    let err = error_of(&consent("[consent.aliases]\nC1 = \"\""));
    assert!(err.contains("consent.aliases.\"C1\""), "{err}");
    let err = error_of(&MINIMAL.replace(
        "categories = [\"analytics\"]",
        "categories = [\"analytics\"]\nchannel = \" \"",
    ));
    assert!(err.contains("destination[0].channel"), "{err}");
}

const JURISDICTIONS: &str = r#"
[[jurisdiction]]
name = "EU"
match = ["DE", "FR"]
model = "opt-in"
gpc_denies = ["analytics"]

[[jurisdiction]]
name = "US-CA"
match = ["US-CA"]
model = "opt-out"
granted_by_default = ["analytics"]
"#;

#[test]
fn jurisdictions_are_read_with_their_models_and_defaults() {
    let text = format!(
        "{}\n{JURISDICTIONS}",
        MINIMAL.replace(
            "topic = \"consent.states\"",
            "topic = \"consent.states\"\ndefault_jurisdiction = \"EU\""
        )
    );
    let config = load(&text).unwrap();
    assert_eq!(config.jurisdictions.len(), 2);
    assert_eq!(config.jurisdictions[0].model, LegalModel::OptIn);
    assert_eq!(config.jurisdictions[1].granted_by_default, ["analytics"]);
    assert_eq!(config.consent.default_jurisdiction.as_deref(), Some("EU"));
}

#[test]
fn a_wrong_jurisdiction_is_an_error_naming_the_field() {
    let with = |consent: &str, jurisdictions: &str| {
        format!(
            "{}\n{jurisdictions}",
            MINIMAL.replace(
                "topic = \"consent.states\"",
                &format!("topic = \"consent.states\"\n{consent}")
            )
        )
    };
    let cases = [
        (
            with("when_missing = \"allow\"", JURISDICTIONS),
            "consent.when_missing",
        ),
        (
            with("default_jurisdiction = \"Mars\"", JURISDICTIONS),
            "consent.default_jurisdiction",
        ),
        (
            with("default_jurisdiction = \"EU\"", ""),
            "consent.default_jurisdiction",
        ),
        (
            with("", &JURISDICTIONS.replace("\"FR\"", "\"fr\"")),
            "jurisdiction[0].match",
        ),
        (
            with("", &JURISDICTIONS.replace("\"US-CA\"]", "\"DE\"]")),
            "jurisdiction[1].match",
        ),
        (
            with(
                "",
                &JURISDICTIONS.replace(
                    "gpc_denies = [\"analytics\"]",
                    "granted_by_default = [\"analytics\"]",
                ),
            ),
            "jurisdiction[0].granted_by_default",
        ),
        (
            with(
                "",
                &JURISDICTIONS.replace("gpc_denies = [\"analytics\"]", "gpc_denies = [\"ads\"]"),
            ),
            "jurisdiction[0].gpc_denies",
        ),
        (
            with(
                "",
                &JURISDICTIONS.replace("model = \"opt-in\"", "model = \"optin\""),
            ),
            "jurisdiction",
        ),
        (
            with(
                "",
                &JURISDICTIONS.replace("name = \"US-CA\"", "name = \"EU\""),
            ),
            "jurisdiction[1].name",
        ),
    ];
    for (text, field) in cases {
        let err = error_of(&text);
        assert!(err.contains(field), "{field} not named in {err}");
    }
}

#[test]
fn privacy_and_deletion_topics_are_named_and_checked() {
    let with_privacy =
        format!("{MINIMAL}\n[privacy]\ntopic = \"privacy.requests\"\nformat = \"protobuf\"\n");
    let config = load(&with_privacy).unwrap();
    let privacy = config.privacy.as_ref().unwrap();
    assert_eq!(
        (privacy.topic.as_str(), privacy.format),
        ("privacy.requests", ConsentFormat::Protobuf)
    );
    assert!(config.topics().iter().any(|t| t.field == "privacy.topic"));
    let deletion = "categories = [\"analytics\"]\ndeletion_topic = \"deletions.amplitude\"";
    let err = error_of(&MINIMAL.replace("categories = [\"analytics\"]", deletion));
    assert!(err.contains("destination[0].deletion_topic"), "{err}");
    let config = load(&with_privacy.replace("categories = [\"analytics\"]", deletion)).unwrap();
    assert!(config
        .topics()
        .iter()
        .any(|t| t.field == "destination[0].deletion_topic"));
    let err = error_of(&with_privacy.replace("privacy.requests", "consent.states"));
    assert!(err.contains("privacy.topic"), "{err}");
}

#[test]
fn learning_from_events_is_off_by_default_and_needs_an_event_name() {
    let config = load(MINIMAL).unwrap();
    assert!(!config.consent.learn_from_events);
    assert_eq!(
        config.consent.learn_event_names,
        ["Segment Consent Preference Updated"]
    );
    let learn = |names: &str| {
        MINIMAL.replace(
            "topic = \"consent.states\"",
            &format!("topic = \"consent.states\"\nlearn_from_events = true\n{names}"),
        )
    };
    assert!(load(&learn("learn_event_names = [\"Consent Updated\"]")).is_ok());
    let err = error_of(&learn("learn_event_names = []"));
    assert!(err.contains("consent.learn_event_names"), "{err}");
}

#[test]
fn the_audit_log_is_off_by_default_and_its_fields_are_checked() {
    assert!(load(MINIMAL).unwrap().audit.is_none());
    let config = load(&format!("{MINIMAL}\n[audit]\ntopic = \"consent.audit\"\n")).unwrap();
    let audit = config.audit.as_ref().unwrap();
    assert_eq!(
        (
            audit.topic.as_str(),
            audit.format,
            audit.instance.as_deref()
        ),
        ("consent.audit", AuditFormat::Json, None)
    );
    assert!(config.topics().iter().any(|t| t.field == "audit.topic"));
    for (text, field) in [
        ("topic = \"consent.states\"", "audit.topic"),
        ("topic = \"a\"\ninstance = \" \"", "audit.instance"),
        (
            "topic = \"a\"\ncheckpoint_group = \"\"",
            "audit.checkpoint_group",
        ),
        ("topic = \"a\"\nformat = \"xml\"", "format"),
    ] {
        let err = error_of(&format!("{MINIMAL}\n[audit]\n{text}\n"));
        assert!(err.contains(field), "{field} not named in {err}");
    }
}
