"""What loadgen.py and verify.py share: the scenario's destinations, the header that carries
an event's messageId, and the command-line options both take."""

from __future__ import annotations

import argparse
import os

DEFAULT_DESTINATIONS = (
    "amplitude=dest.amplitude,google-ads=dest.google-ads,braze=dest.braze,warehouse=dest.warehouse"
)
HEADER = "loadgen-message-id"


def parse_destinations(text: str) -> dict[str, str]:
    """`name=topic,...` as a mapping; a ValueError names the pair at fault."""
    mapping = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        name, sep, topic = pair.partition("=")
        if not sep or not name or not topic:
            raise ValueError(f"not name=topic: {pair!r}")
        mapping[name] = topic
    if not mapping:
        raise ValueError("no destination")
    return mapping


def parser(description: str, destinations_help: str) -> argparse.ArgumentParser:
    """A parser with the options both programs take: the broker, the input topic and the
    destinations, each from the environment by default."""
    env = os.environ.get
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--bootstrap",
        default=env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="broker address (env KAFKA_BOOTSTRAP_SERVERS; default 127.0.0.1:9092)",
    )
    p.add_argument("--input-topic", default=env("SCENARIO_INPUT_TOPIC", "events.raw"))
    p.add_argument(
        "--destinations",
        default=env("SCENARIO_DESTINATIONS", DEFAULT_DESTINATIONS),
        help=destinations_help,
    )
    return p
