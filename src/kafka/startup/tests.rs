use super::*;

fn configured() -> Vec<(String, String)> {
    vec![
        ("events".to_owned(), "input.topics[0]".to_owned()),
        ("hold".to_owned(), "hold.topic".to_owned()),
    ]
}

fn topic(name: &str, partitions: &[(i32, Option<RDKafkaErrorCode>)]) -> TopicView {
    TopicView {
        name: name.to_owned(),
        error: None,
        partitions: partitions.to_vec(),
    }
}

fn led(partitions: usize) -> Vec<(i32, Option<RDKafkaErrorCode>)> {
    vec![(1, None); partitions]
}

fn problem_of(assessment: Assessment) -> (&'static str, String, ProblemKind) {
    match assessment {
        Assessment::Usable(_) => ("usable", String::new(), ProblemKind::NotReady),
        Assessment::Settling(p) => ("settling", p.field, p.kind),
        Assessment::Lasting(p) => ("lasting", p.field, p.kind),
    }
}

#[test]
fn leader_election_and_coordinator_loading_are_transient() {
    for code in [
        RDKafkaErrorCode::LeaderNotAvailable,
        RDKafkaErrorCode::NotLeaderForPartition,
        RDKafkaErrorCode::CoordinatorLoadInProgress,
        RDKafkaErrorCode::CoordinatorNotAvailable,
        RDKafkaErrorCode::NotCoordinator,
        RDKafkaErrorCode::OperationTimedOut,
        RDKafkaErrorCode::AllBrokersDown,
    ] {
        assert!(is_transient(&KafkaError::MetadataFetch(code)), "{code:?}");
    }
}

#[test]
fn authentication_authorization_and_bad_requests_are_lasting() {
    for code in [
        RDKafkaErrorCode::Authentication,
        RDKafkaErrorCode::SaslAuthenticationFailed,
        RDKafkaErrorCode::TopicAuthorizationFailed,
        RDKafkaErrorCode::ClusterAuthorizationFailed,
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        RDKafkaErrorCode::InvalidReplicationFactor,
        RDKafkaErrorCode::SSL,
    ] {
        assert!(!is_transient(&KafkaError::MetadataFetch(code)), "{code:?}");
    }
    assert!(!is_transient(&KafkaError::ClientCreation(
        "bad config".to_owned()
    )));
    assert!(is_authentication_failure(RDKafkaErrorCode::Authentication));
    assert!(is_authentication_failure(
        RDKafkaErrorCode::SaslAuthenticationFailed
    ));
}

#[test]
fn topics_with_a_leader_for_every_partition_are_usable_with_their_counts() {
    let found = [topic("events", &led(3)), topic("hold", &led(3))];
    let Assessment::Usable(partitions) = assess(&configured(), &found, true) else {
        panic!("not usable");
    };
    assert_eq!(partitions.get("events"), Some(&3));
    assert_eq!(partitions.get("hold"), Some(&3));
}

#[test]
fn a_missing_hold_topic_is_lasting_and_named_by_its_field() {
    let found = [topic("events", &led(3))];
    assert_eq!(
        problem_of(assess(&configured(), &found, true)),
        ("lasting", "hold.topic".to_owned(), ProblemKind::Missing)
    );
}

#[test]
fn a_topic_absent_just_after_start_is_waited_for() {
    let found = [topic("events", &led(3))];
    assert_eq!(
        problem_of(assess(&configured(), &found, false)),
        ("settling", "hold.topic".to_owned(), ProblemKind::Missing)
    );
}

#[test]
fn a_partition_without_a_leader_is_settling() {
    let found = [
        topic("events", &[(1, None), (-1, None)]),
        topic("hold", &led(1)),
    ];
    assert_eq!(
        problem_of(assess(&configured(), &found, true)),
        (
            "settling",
            "input.topics[0]".to_owned(),
            ProblemKind::NotReady
        )
    );
    let found = [
        topic("events", &[(1, Some(RDKafkaErrorCode::LeaderNotAvailable))]),
        topic("hold", &led(1)),
    ];
    assert_eq!(
        problem_of(assess(&configured(), &found, true)),
        (
            "settling",
            "input.topics[0]".to_owned(),
            ProblemKind::NotReady
        )
    );
}

#[test]
fn a_partition_with_a_follower_down_is_usable() {
    let found = [
        topic(
            "events",
            &[(1, Some(RDKafkaErrorCode::ReplicaNotAvailable))],
        ),
        topic("hold", &led(1)),
    ];
    assert!(matches!(
        assess(&configured(), &found, true),
        Assessment::Usable(_)
    ));
}

#[test]
fn an_unauthorized_topic_is_lasting_even_while_another_settles() {
    let mut denied = topic("hold", &[]);
    denied.error = Some(RDKafkaErrorCode::TopicAuthorizationFailed);
    let found = [topic("events", &[(-1, None)]), denied];
    assert_eq!(
        problem_of(assess(&configured(), &found, false)),
        ("lasting", "hold.topic".to_owned(), ProblemKind::Unusable)
    );
}

#[test]
fn retry_gives_up_at_once_on_a_lasting_error() {
    let mut tries = 0;
    let result: KafkaResult<()> =
        retry(Instant::now() + Duration::from_secs(60), "testing", |_| {
            tries += 1;
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::TopicAuthorizationFailed,
            ))
        });
    assert!(result.is_err());
    assert_eq!(tries, 1);
}

#[test]
fn retry_waits_out_transient_errors() {
    let mut tries = 0;
    let result = retry(Instant::now() + Duration::from_secs(60), "testing", |_| {
        tries += 1;
        if tries < 3 {
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::NotLeaderForPartition,
            ))
        } else {
            Ok(tries)
        }
    });
    assert_eq!(result.ok(), Some(3));
}

#[test]
fn retry_stops_at_the_deadline_with_the_last_error() {
    let started = Instant::now();
    let result: KafkaResult<()> = retry(started + Duration::from_millis(300), "testing", |_| {
        Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::LeaderNotAvailable,
        ))
    });
    assert!(matches!(
        result,
        Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::LeaderNotAvailable
        ))
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}
