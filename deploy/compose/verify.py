#!/usr/bin/env python3
"""Checks a loadgen.py run: every event reached exactly the destinations its messageId names.

It reads the input topic (what the run wrote: the truth), then every destination topic and the
dead-letter topic from their beginning, until each expected record has arrived, the enforcer's
consumer group (--enforcer-group) has committed the input topic up to the end it had when
verify started (so every event of the run was judged and its writes acknowledged), and nothing
new of the run has come for --idle seconds (or until --timeout). Records of other runs and
other writers are skipped. It fails (exit 1) when:

- a leak: an event reached a destination its messageId does not name (its user had not
  consented at the time, was suppressed, or its integrations excluded it), or reached the
  dead-letter topic although well formed;
- a loss: an event is missing from a destination it names, or a malformed event is missing
  from the dead-letter topic;
- a dead letter carries another reason (header consent-enforcer-error) than expected;
- with --no-duplicates, an event reached one destination more than once (at-least-once
  delivery allows that after a crash, so it is reported but allowed by default);
- the enforcer's group had not committed the input topic's end by --timeout: events may not
  have been judged yet, so a leak could still come.

Exit status: 0 all checks pass, 1 a check failed, 2 a usage or setup error (a topic missing,
no event of the run on the input topic).

Usage (the same outside Docker, against a local broker; scripts/scenario.sh runs the whole
scenario so, with the project's broker and the enforcer binary):

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python3 deploy/compose/verify.py \
        --run-id-file /tmp/scenario-run-id
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

import scenario_args  # beside this file

REASON_HEADER = "consent-enforcer-error"
DEAD_LETTER = "dead-letter"


class SetupError(Exception):
    """A problem with the arguments or the cluster, not with what the enforcer did."""


@dataclass(frozen=True)
class Expectation:
    case: str
    deliver: frozenset[str]  # destination names
    dead_letter: str | None  # the reason, for a malformed event


def parse_expectation(message_id: str) -> Expectation:
    """`<run>.<seq>.<case>.deliver=a+b` or `<run>.<seq>.<case>.dead_letter=<reason>`."""
    parts = message_id.split(".", 3)
    if len(parts) != 4:
        raise ValueError(f"not a loadgen messageId: {message_id!r}")
    _run, _seq, case, outcome = parts
    kind, sep, value = outcome.partition("=")
    if not sep:
        raise ValueError(f"no outcome in {message_id!r}")
    if kind == "deliver":
        return Expectation(case, frozenset(n for n in value.split("+") if n), None)
    if kind == "dead_letter" and value:
        return Expectation(case, frozenset(), value)
    raise ValueError(f"unknown outcome {outcome!r} in {message_id!r}")


def header(msg, name: str) -> str | None:
    for key, value in msg.headers() or ():
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return None


def consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "scenario-verify-" + uuid.uuid4().hex[:8],  # never commits
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            # Exactly-once deliveries count once committed, as a read_committed reader sees them.
            "isolation.level": "read_committed",
        }
    )


def partitions(client: Consumer, topic: str) -> list[TopicPartition]:
    meta = client.list_topics(topic, timeout=15)
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        reason = info.error if info is not None and info.error is not None else "not found"
        raise SetupError(f"topic {topic}: {reason}")
    return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(info.partitions)]


def read_sent(
    bootstrap: str, topic: str, run: str, timeout: float
) -> tuple[dict[str, Expectation], dict[int, int]]:
    """The run's events on the input topic, read up to the end offsets it has now; and those
    end offsets (partition -> offset, for the partitions that hold records)."""
    client = consumer(bootstrap)
    try:
        tps = partitions(client, topic)
        ends = {}
        for tp in tps:
            low, high = client.get_watermark_offsets(tp, timeout=15)
            if high > low:
                ends[tp.partition] = high
        input_ends = dict(ends)
        client.assign(tps)
        sent: dict[str, Expectation] = {}
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise SetupError(f"could not read {topic} to its end within {timeout:.0f} s")
            msg = client.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise SetupError(f"reading {topic}: {msg.error()}")
            mid = header(msg, scenario_args.HEADER)
            if mid is not None and mid.startswith(run + "."):
                sent[mid] = parse_expectation(mid)
            if msg.partition() in ends and msg.offset() + 1 >= ends[msg.partition()]:
                del ends[msg.partition()]
        return sent, input_ends
    finally:
        client.close()


class Judged:
    """Whether the enforcer's consumer group has committed `topic` up to `ends`: at-least-once
    and exactly-once alike, a committed offset means every event before it was judged and
    its writes acknowledged (or committed). With no group, always true."""

    def __init__(self, bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> None:
        self.group = group
        self.topic = topic
        self.ends = ends
        self.behind = sum(ends.values())  # records not known to be committed
        self.admin = AdminClient({"bootstrap.servers": bootstrap}) if group else None
        self.checked = 0.0

    def __call__(self) -> bool:
        if self.admin is None or self.behind == 0:
            return True
        now = time.monotonic()
        if now - self.checked < 1.0:
            return False
        self.checked = now
        request = ConsumerGroupTopicPartitions(
            self.group, [TopicPartition(self.topic, p) for p in sorted(self.ends)]
        )
        try:
            (future,) = self.admin.list_consumer_group_offsets([request]).values()
            result = future.result(timeout=15)
            committed = {tp.partition: tp.offset for tp in result.topic_partitions}
        except KafkaException:
            return False  # asked again a second later; the timeout bounds it
        self.behind = sum(max(0, end - max(0, committed.get(p, 0))) for p, end in self.ends.items())
        return self.behind == 0


@dataclass
class Seen:
    """What one output topic holds of the run."""

    counts: Counter = field(default_factory=Counter)
    reasons: dict[str, set[str]] = field(default_factory=dict)


def watch(
    bootstrap: str,
    topics: dict[str, str],
    run: str,
    wanted: dict[str, set[str]],
    judged: Judged,
    idle: float,
    timeout: float,
) -> tuple[dict[str, Seen], bool]:
    """Reads every topic in `topics` (label -> topic) until all `wanted` ids (label -> ids)
    have arrived, the input is `judged`, and the run has been idle for `idle` seconds since
    then, or until `timeout`. Returns what was seen and whether the wait ended by timeout."""
    client = consumer(bootstrap)
    by_topic = {topic: label for label, topic in topics.items()}
    seen = {label: Seen() for label in topics}
    try:
        tps = [tp for topic in topics.values() for tp in partitions(client, topic)]
        client.assign(tps)
        start = time.monotonic()
        last = start
        judged_at = None
        outstanding = sum(len(ids) for ids in wanted.values())
        while True:
            now = time.monotonic()
            if judged_at is None and judged():
                judged_at = now
            if outstanding == 0 and judged_at is not None and now - max(last, judged_at) >= idle:
                return seen, False
            if now - start >= timeout:
                return seen, True
            msg = client.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise SetupError(f"reading {msg.topic()}: {msg.error()}")
            mid = header(msg, scenario_args.HEADER)
            if mid is None or not mid.startswith(run + "."):
                continue
            label = by_topic[msg.topic()]
            entry = seen[label]
            if entry.counts[mid] == 0 and mid in wanted[label]:
                outstanding -= 1
            entry.counts[mid] += 1
            reason = header(msg, REASON_HEADER)
            if reason is not None:
                entry.reasons.setdefault(mid, set()).add(reason)
            last = time.monotonic()
    finally:
        client.close()


@dataclass
class Row:
    label: str
    topic: str
    expected: int
    received: int
    leaked: list[str]
    missing: list[str]
    duplicates: int
    wrong_reason: list[str] = field(default_factory=list)

    def failed(self, no_duplicates: bool) -> bool:
        return bool(
            self.leaked or self.missing or self.wrong_reason or (no_duplicates and self.duplicates)
        )


def compare(label: str, topic: str, wanted: set[str], entry: Seen) -> Row:
    got = entry.counts
    return Row(
        label=label,
        topic=topic,
        expected=len(wanted),
        received=sum(1 for mid in got if mid in wanted),
        leaked=sorted(mid for mid in got if mid not in wanted),
        missing=sorted(wanted - set(got)),
        duplicates=sum(count - 1 for count in got.values() if count > 1),
    )


def arguments(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    p = scenario_args.parser(
        __doc__.split("\n", 1)[0],
        "name=topic,... of every destination (env SCENARIO_DESTINATIONS)",
    )
    p.add_argument(
        "--dead-letter-topic", default=env("SCENARIO_DEAD_LETTER_TOPIC", "events.dead-letter")
    )
    p.add_argument(
        "--enforcer-group",
        default=env("SCENARIO_ENFORCER_GROUP", "consent-enforcer"),
        help="the enforcer's kafka.group_id, whose commits on the input topic say what was "
        "judged (env SCENARIO_ENFORCER_GROUP; default consent-enforcer; empty: do not wait)",
    )
    p.add_argument("--run-id", default=env("SCENARIO_RUN_ID"), help="env SCENARIO_RUN_ID")
    p.add_argument(
        "--run-id-file",
        default=env("SCENARIO_RUN_ID_FILE"),
        help="read the run id loadgen.py wrote there (env SCENARIO_RUN_ID_FILE)",
    )
    p.add_argument(
        "--idle",
        type=float,
        default=float(env("VERIFY_IDLE_SECONDS", "10")),
        help="seconds without a new record of the run, once all expected ones arrived (default 10)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=float(env("VERIFY_TIMEOUT_SECONDS", "180")),
        help="seconds to wait for the expected records at most (default 180)",
    )
    p.add_argument(
        "--no-duplicates",
        action="store_true",
        default=env("VERIFY_NO_DUPLICATES", "") not in ("", "0", "false"),
        help="fail when an event reached a destination twice (env VERIFY_NO_DUPLICATES=1)",
    )
    args = p.parse_args(argv)
    try:
        args.destination_topics = scenario_args.parse_destinations(args.destinations)
    except ValueError as err:
        p.error(f"--destinations: {err}")
    if DEAD_LETTER in args.destination_topics:
        p.error(f"--destinations: {DEAD_LETTER!r} is the dead-letter topic's label")
    if not args.run_id and args.run_id_file:
        try:
            with open(args.run_id_file, encoding="utf-8") as f:
                args.run_id = f.read().strip()
        except OSError as err:
            p.error(f"--run-id-file: {err}")
    if not args.run_id:
        p.error("give --run-id or --run-id-file (what loadgen.py printed or wrote)")
    return args


def report(rows: list[Row], sent: dict[str, Expectation], no_duplicates: bool) -> None:
    print(
        f"{'output':<12} {'topic':<22} {'expected':>8} {'received':>8} {'leaked':>6} "
        f"{'missing':>7} {'dup':>5} {'reason':>6}"
    )
    for r in rows:
        print(
            f"{r.label:<12} {r.topic:<22} {r.expected:>8} {r.received:>8} {len(r.leaked):>6} "
            f"{len(r.missing):>7} {r.duplicates:>5} {len(r.wrong_reason):>6}"
        )
    for r in rows:
        for what, ids in (
            ("leaked", r.leaked),
            ("missing", r.missing),
            ("wrong reason", r.wrong_reason),
        ):
            if ids:
                by_case = Counter(
                    sent[m].case if m in sent else "(not sent by this run)" for m in ids
                )
                cases = ", ".join(f"{case} x{n}" for case, n in sorted(by_case.items()))
                print(f"  {r.label}: {len(ids)} {what}, by case: {cases}; e.g. {ids[0]}")
        if r.duplicates and not no_duplicates:
            print(f"  {r.label}: {r.duplicates} duplicates (allowed: at-least-once)")


def main(argv: list[str]) -> int:
    args = arguments(argv)
    run = args.run_id
    try:
        sent, input_ends = read_sent(args.bootstrap, args.input_topic, run, args.timeout)
        if not sent:
            raise SetupError(f"no event of run {run} on {args.input_topic}")
        names = set(args.destination_topics)
        unknown = {n for e in sent.values() for n in e.deliver} - names
        if unknown:
            raise SetupError(f"the run names destinations not in --destinations: {sorted(unknown)}")
        outputs = {**args.destination_topics, DEAD_LETTER: args.dead_letter_topic}
        wanted: dict[str, set[str]] = {label: set() for label in outputs}
        for mid, expectation in sent.items():
            for name in expectation.deliver:
                wanted[name].add(mid)
            if expectation.dead_letter is not None:
                wanted[DEAD_LETTER].add(mid)
        print(
            f"verify: run {run}: {len(sent)} events on {args.input_topic} "
            f"({len(wanted[DEAD_LETTER])} malformed); reading {', '.join(outputs.values())}"
        )
        judged = Judged(args.bootstrap, args.enforcer_group, args.input_topic, input_ends)
        seen, timed_out = watch(
            args.bootstrap, outputs, run, wanted, judged, args.idle, args.timeout
        )
    except (SetupError, KafkaException) as err:
        print(f"verify: {err}", file=sys.stderr)
        return 2

    rows = [compare(label, outputs[label], wanted[label], seen[label]) for label in outputs]
    dead = rows[-1]
    dead.wrong_reason = sorted(
        mid
        for mid, reasons in seen[DEAD_LETTER].reasons.items()
        if mid in wanted[DEAD_LETTER] and reasons != {sent[mid].dead_letter}
    )
    if timed_out:
        print(f"verify: stopped waiting after {args.timeout:.0f} s")
    report(rows, sent, args.no_duplicates)
    failed = [r.label for r in rows if r.failed(args.no_duplicates)]
    if judged.behind:
        print(
            f"  {args.input_topic}: group {args.enforcer_group} has {judged.behind} records "
            "left to commit: not every event was judged, a leak could still come"
        )
        failed.append("not judged")
    if failed:
        print(f"verify: FAIL ({', '.join(failed)})")
        return 1
    print(f"verify: PASS: {len(sent)} events, no leak, no loss")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
