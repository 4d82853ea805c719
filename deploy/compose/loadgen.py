#!/usr/bin/env python3
"""Writes the integration scenario: consent states, consent changes, privacy requests, then events.

The scenario is written for the destinations and rules of deploy/compose/enforcer.toml:

    amplitude   categories = ["analytics"]                      (match "all")
    google-ads  categories = ["advertising"]                    (match "all")
    braze       categories = ["marketing", "personalization"],  match = "any"
    warehouse   categories = []                                 (strictly necessary)

with consent.when_missing = "deny" (the default) and no [[jurisdiction]], no hold.

Each event's messageId says what must happen to it (verify.py reads nothing else):

    <run>.<seq>.<case>.deliver=amplitude+warehouse   delivered to exactly these destinations
    <run>.<seq>.<case>.deliver=                      delivered nowhere
    <run>.<seq>.<case>.dead_letter=not_json          only on the dead-letter topic, with that reason

and the same string is in the record header `loadgen-message-id` (a malformed event has no
readable messageId; headers are copied to destinations and dead letters as they came).

Times. Let T be the moment this program starts. Initial consent states are dated T-10min,
consent changes T-5min; events are dated T-7min (between the two: judged now *and* at their
time, README "The decision", "Now and at the event's time") or T-1min (after both). Every
consent record, privacy request and event is acknowledged (acks=all) before the next phase is
written, so the enforcer judges every event with all of them (README Guarantees 1).

Usage (the same outside Docker, against a local broker; scripts/scenario.sh runs the whole
scenario so, with the project's broker and the enforcer binary):

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python3 deploy/compose/loadgen.py \
        --run-id-file /tmp/scenario-run-id

Exit status: 0 when everything was written and acknowledged, 1 when a write failed, 2 on a
usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from confluent_kafka import KafkaException, Producer

import scenario_args  # beside this file

AMPLITUDE = "amplitude"
GOOGLE_ADS = "google-ads"
BRAZE = "braze"
WAREHOUSE = "warehouse"
DESTINATIONS = (AMPLITUDE, GOOGLE_ADS, BRAZE, WAREHOUSE)

MINUTE_MS = 60_000
# Offsets from the start, in milliseconds.
INITIAL = -10 * MINUTE_MS  # the first consent states
CHANGE = -5 * MINUTE_MS  # the consent changes (revocations, grants) and privacy requests
MID = -7 * MINUTE_MS  # an event between the two
LATE = -1 * MINUTE_MS  # an event after both

GRANT_ALL = {"analytics": True, "advertising": True, "marketing": True, "personalization": True}
DENY_ALL = {"analytics": False, "advertising": False, "marketing": False, "personalization": False}


def prefs(**granted: bool) -> dict[str, bool]:
    """A categoryPreferences object: every category False unless given."""
    return {**DENY_ALL, **granted}


@dataclass(frozen=True)
class ConsentWrite:
    """One consent record. `value` None is a tombstone; bytes are written as they are."""

    at: int  # INITIAL or CHANGE
    value: dict[str, bool] | bytes | None
    identifier: str = "user"  # "user" (the userId) or "anonymous" (the anonymousId)


@dataclass(frozen=True)
class Event:
    at: int  # MID or LATE
    deliver: frozenset[str]
    identifiers: str = "user"  # "user", "anonymous" or "both"
    context: dict | None = None
    integrations: dict | None = None


@dataclass(frozen=True)
class Case:
    """Users that share one consent history, and the events written for each of them."""

    name: str
    consent: tuple[ConsentWrite, ...]
    events: tuple[Event, ...]
    suppress: bool = False  # a SUPPRESS privacy request for the userId, dated CHANGE


@dataclass(frozen=True)
class DeadLetter:
    """A malformed event: dead-lettered with `reason`, delivered nowhere."""

    reason: str
    value: Callable[[str], bytes] = field(compare=False)  # built around the messageId


def to(*names: str) -> frozenset[str]:
    return frozenset(names)


# The README's decision table, case by case (step numbers are those of "The decision").
CASES: tuple[Case, ...] = (
    # Step 5: every category granted; step 3: warehouse is strictly necessary.
    Case(
        "granted_all",
        (ConsentWrite(INITIAL, GRANT_ALL),),
        (
            Event(LATE, to(*DESTINATIONS)),
            Event(MID, to(*DESTINATIONS)),
            # Step 2: integrations names the destination with false.
            Event(LATE, to(GOOGLE_ADS, BRAZE, WAREHOUSE), integrations={"Amplitude": False}),
            # Step 2: All false, and only the destination named true gets it.
            Event(LATE, to(WAREHOUSE), integrations={"All": False, "Warehouse": True}),
            Event(LATE, to(BRAZE), integrations={"All": False, "Braze": True}),
        ),
    ),
    # Step 5, match "all": only the granted category's destination.
    Case(
        "analytics_only",
        (ConsentWrite(INITIAL, prefs(analytics=True)),),
        (Event(LATE, to(AMPLITUDE, WAREHOUSE)),),
    ),
    # Step 5, match "any": one of braze's two categories is enough.
    Case(
        "personalization_only",
        (ConsentWrite(INITIAL, prefs(personalization=True)),),
        (Event(LATE, to(BRAZE, WAREHOUSE)),),
    ),
    # A category absent from the state is not granted.
    Case(
        "advertising_only_others_absent",
        (ConsentWrite(INITIAL, {"advertising": True}),),
        (Event(LATE, to(GOOGLE_ADS, WAREHOUSE)),),
    ),
    # Step 5 "denied": a state that grants nothing.
    Case(
        "denied_all",
        (ConsentWrite(INITIAL, DENY_ALL),),
        (Event(LATE, to(WAREHOUSE)),),
    ),
    # Step 4: no consent source at all, when_missing = "deny".
    Case("no_state", (), (Event(LATE, to(WAREHOUSE)), Event(MID, to(WAREHOUSE)))),
    # Revocation: denied now, whatever the event's time.
    Case(
        "revoked_all",
        (ConsentWrite(INITIAL, GRANT_ALL), ConsentWrite(CHANGE, DENY_ALL)),
        (Event(MID, to(WAREHOUSE)), Event(LATE, to(WAREHOUSE))),
    ),
    Case(
        "revoked_advertising",
        (
            ConsentWrite(INITIAL, GRANT_ALL),
            ConsentWrite(CHANGE, {**GRANT_ALL, "advertising": False}),
        ),
        (Event(MID, to(AMPLITUDE, BRAZE, WAREHOUSE)), Event(LATE, to(AMPLITUDE, BRAZE, WAREHOUSE))),
    ),
    # A grant given after an event never delivers it (denied at the event's time).
    Case(
        "granted_later",
        (ConsentWrite(INITIAL, DENY_ALL), ConsentWrite(CHANGE, GRANT_ALL)),
        (Event(MID, to(WAREHOUSE)), Event(LATE, to(*DESTINATIONS))),
    ),
    # An event from before the user's first recorded choice: no consent at its time.
    Case(
        "first_choice_after_event",
        (ConsentWrite(CHANGE, GRANT_ALL),),
        (Event(MID, to(WAREHOUSE)), Event(LATE, to(*DESTINATIONS))),
    ),
    # Segment's stamp is a consent source of its own; only JSON true grants.
    Case(
        "stamp_only",
        (),
        (
            Event(
                LATE,
                to(AMPLITUDE, WAREHOUSE),
                context={
                    "consent": {"categoryPreferences": {"analytics": True, "advertising": False}}
                },
            ),
            Event(
                LATE,
                to(WAREHOUSE),
                context={"consent": {"categoryPreferences": {"analytics": "true"}}},
            ),
        ),
    ),
    # Every present source must grant: the stored state and the stamp.
    Case(
        "state_and_stamp",
        (ConsentWrite(INITIAL, GRANT_ALL),),
        (
            Event(
                LATE,
                to(GOOGLE_ADS, WAREHOUSE),
                context={
                    "consent": {"categoryPreferences": {"analytics": False, "advertising": True}}
                },
            ),
        ),
    ),
    # RudderStack's stamp: allowed and not denied.
    Case(
        "consent_management_stamp",
        (),
        (
            Event(
                LATE,
                to(AMPLITUDE, BRAZE, WAREHOUSE),
                context={
                    "consentManagement": {
                        "allowedConsentIds": ["analytics", "marketing", "advertising"],
                        "deniedConsentIds": ["advertising"],
                    }
                },
            ),
        ),
    ),
    # The anonymousId's state is the person's when the userId has none.
    Case(
        "anonymous_state",
        (ConsentWrite(INITIAL, prefs(analytics=True), identifier="anonymous"),),
        (Event(LATE, to(AMPLITUDE, WAREHOUSE), identifiers="both"),),
    ),
    # The newer of the two identifiers' states wins.
    Case(
        "user_state_newer_than_anonymous",
        (
            ConsentWrite(INITIAL, GRANT_ALL, identifier="anonymous"),
            ConsentWrite(CHANGE, DENY_ALL),
        ),
        (Event(LATE, to(WAREHOUSE), identifiers="both"),),
    ),
    Case(
        "anonymous_state_newer_than_user",
        (
            ConsentWrite(INITIAL, DENY_ALL),
            ConsentWrite(CHANGE, prefs(marketing=True), identifier="anonymous"),
        ),
        (Event(LATE, to(BRAZE, WAREHOUSE), identifiers="both"),),
    ),
    # A malformed consent record fails the user closed: present, nothing granted.
    Case(
        "failed_closed",
        (ConsentWrite(INITIAL, GRANT_ALL), ConsentWrite(CHANGE, b"this is not json")),
        (Event(LATE, to(WAREHOUSE)),),
    ),
    # A tombstone removes the state: no stored state at any time.
    Case(
        "tombstoned",
        (ConsentWrite(INITIAL, GRANT_ALL), ConsentWrite(CHANGE, None)),
        (Event(LATE, to(WAREHOUSE)),),
    ),
    # Step 1: a suppressed user reaches no destination, strictly necessary ones included.
    Case(
        "suppressed",
        (ConsentWrite(INITIAL, GRANT_ALL),),
        (Event(LATE, to()), Event(MID, to())),
        suppress=True,
    ),
)

# Malformed events (README "Malformed events"), built around their messageId.
DEAD_LETTERS: tuple[DeadLetter, ...] = (
    DeadLetter(
        "not_json", lambda mid: ('{"type":"track","messageId":"%s","userId":' % mid).encode()
    ),
    DeadLetter("not_object", lambda mid: json.dumps([mid]).encode()),
    DeadLetter(
        "duplicate_key",
        lambda mid: ('{"type":"track","messageId":"%s","userId":"a","userId":"b"}' % mid).encode(),
    ),
    DeadLetter(
        "no_identifier",
        lambda mid: json.dumps({"type": "track", "event": "Loadgen", "messageId": mid}).encode(),
    ),
)


def iso(ms: int) -> str:
    """RFC 3339 with milliseconds, UTC."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def message_id(run: str, seq: int, case: str, outcome: str) -> str:
    return f"{run}.{seq:06d}.{case}.{outcome}"


def deliver_outcome(names: frozenset[str]) -> str:
    return "deliver=" + "+".join(sorted(names))


class Writer:
    """A producer whose every write must be acknowledged; `flush` raises on any failure."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                # Java-compatible murmur2, as the enforcer and Java clients partition keyed
                # records (README Guarantees 3: keep one partitioner for the consent topic).
                "partitioner": "murmur2_random",
                "linger.ms": 5,
            }
        )
        self.failures: list[str] = []
        self.written = 0

    def _report(self, err, msg) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()}: {err}")

    def send(self, topic: str, key: str, value: bytes | None, headers=None) -> None:
        while True:
            try:
                self.producer.produce(
                    topic, key=key.encode(), value=value, headers=headers, on_delivery=self._report
                )
                break
            except BufferError:  # the local queue is full: serve acknowledgements, retry
                self.producer.poll(0.1)
        self.written += 1
        self.producer.poll(0)

    def flush(self, what: str, timeout: float) -> None:
        left = self.producer.flush(timeout)
        if left:
            self.failures.append(f"{left} {what} not acknowledged within {timeout:.0f} s")
        if self.failures:
            raise RuntimeError(f"writing {what} failed: " + "; ".join(self.failures[:5]))


def arguments(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    p = scenario_args.parser(
        __doc__.split("\n", 1)[0],
        "name=topic,... (env SCENARIO_DESTINATIONS); the names must be the scenario's",
    )
    p.add_argument("--consent-topic", default=env("SCENARIO_CONSENT_TOPIC", "consent.states"))
    p.add_argument("--privacy-topic", default=env("SCENARIO_PRIVACY_TOPIC", "privacy.requests"))
    p.add_argument(
        "--users-per-case",
        type=int,
        default=int(env("SCENARIO_USERS_PER_CASE", "20")),
        help="users written for each case (env SCENARIO_USERS_PER_CASE; default 20)",
    )
    p.add_argument(
        "--run-id",
        default=env("SCENARIO_RUN_ID") or "r" + uuid.uuid4().hex[:10],
        help="prefix of every identifier and messageId (env SCENARIO_RUN_ID; default random)",
    )
    p.add_argument(
        "--run-id-file",
        default=env("SCENARIO_RUN_ID_FILE"),
        help="write the run id there, for verify.py (env SCENARIO_RUN_ID_FILE)",
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for each phase's acks"
    )
    args = p.parse_args(argv)
    try:
        names = set(scenario_args.parse_destinations(args.destinations))
    except ValueError as err:
        p.error(f"--destinations: {err}")
    if names != set(DESTINATIONS):
        p.error(
            f"--destinations names {sorted(names)}, but the scenario is written for "
            f"{sorted(DESTINATIONS)} (deploy/compose/enforcer.toml)"
        )
    if args.users_per_case < 1:
        p.error("--users-per-case must be at least 1")
    if "." in args.run_id:
        p.error("--run-id must not contain '.'")
    return args


def main(argv: list[str]) -> int:
    args = arguments(argv)
    start = int(time.time() * 1000)
    run = args.run_id
    writer = Writer(args.bootstrap)

    def user(case: Case, i: int) -> str:
        return f"{run}-{case.name}-{i}"

    def identifier(case: Case, i: int, which: str) -> str:
        return user(case, i) + ("-anon" if which == "anonymous" else "")

    def consent_value(write: ConsentWrite) -> bytes | None:
        if write.value is None or isinstance(write.value, bytes):
            return write.value
        state = {"categoryPreferences": write.value, "updatedAt": iso(start + write.at)}
        return json.dumps(state).encode()

    counts = {"consent": 0, "privacy": 0, "events": 0, "dead_letters": 0}
    try:
        # Phases 1 and 2: the first states, then the changes, each acknowledged before the next.
        for phase, label in ((INITIAL, "initial consent states"), (CHANGE, "consent changes")):
            for case in CASES:
                for write in (w for w in case.consent if w.at == phase):
                    for i in range(args.users_per_case):
                        key = identifier(case, i, write.identifier)
                        writer.send(args.consent_topic, key, consent_value(write))
                        counts["consent"] += 1
            writer.flush(label, args.timeout)

        # Phase 3: privacy requests.
        request = json.dumps({"type": "SUPPRESS", "requestedAt": iso(start + CHANGE)}).encode()
        for case in (c for c in CASES if c.suppress):
            for i in range(args.users_per_case):
                writer.send(args.privacy_topic, user(case, i), request)
                counts["privacy"] += 1
        writer.flush("privacy requests", args.timeout)

        # Phase 4: the events, each carrying its expected outcome.
        seq = 0
        expected = {name: 0 for name in DESTINATIONS}
        for i in range(args.users_per_case):
            for case in CASES:
                for event in case.events:
                    seq += 1
                    mid = message_id(run, seq, case.name, deliver_outcome(event.deliver))
                    value = {
                        "type": "track",
                        "event": "Loadgen Event",
                        "messageId": mid,
                        "timestamp": iso(start + event.at),
                        "properties": {"case": case.name},
                    }
                    if event.identifiers in ("user", "both"):
                        value["userId"] = identifier(case, i, "user")
                    if event.identifiers in ("anonymous", "both"):
                        value["anonymousId"] = identifier(case, i, "anonymous")
                    if event.context is not None:
                        value["context"] = event.context
                    if event.integrations is not None:
                        value["integrations"] = event.integrations
                    key = value.get("userId") or value["anonymousId"]
                    writer.send(
                        args.input_topic,
                        key,
                        json.dumps(value).encode(),
                        [(scenario_args.HEADER, mid.encode())],
                    )
                    counts["events"] += 1
                    for name in event.deliver:
                        expected[name] += 1
            for dead in DEAD_LETTERS:
                seq += 1
                mid = message_id(run, seq, "malformed", f"dead_letter={dead.reason}")
                writer.send(
                    args.input_topic,
                    f"{run}-malformed-{i}",
                    dead.value(mid),
                    [(scenario_args.HEADER, mid.encode())],
                )
                counts["dead_letters"] += 1
        writer.flush("events", args.timeout)
    except (RuntimeError, KafkaException) as err:
        print(f"loadgen: {err}", file=sys.stderr)
        return 1

    if args.run_id_file:
        with open(args.run_id_file, "w", encoding="utf-8") as out:
            out.write(run + "\n")
    print(
        f"loadgen: run {run}: {len(CASES)} cases x {args.users_per_case} users; wrote "
        f"{counts['consent']} consent records, {counts['privacy']} privacy requests, "
        f"{counts['events']} events and {counts['dead_letters']} malformed events, all acknowledged"
    )
    print("loadgen: expected deliveries: " + ", ".join(f"{n}={expected[n]}" for n in DESTINATIONS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
