"""A producer process: reads ``[{"actor", "kwargs", "delay"}]`` on stdin, sends each, prints the ids.

Fault tests that own their Redis send through this, so messages take the same path as a
service's ``actor.send`` (validation, job record, broker) against that Redis.
"""

from __future__ import annotations

import json
import sys

import dramatiq

import actors.app  # noqa: F401  (the broker, set up from PFD_* variables)
import tests.probe_actors  # noqa: F401


def main() -> None:
    """Send the messages given on stdin; print their message ids as one JSON line."""
    broker = dramatiq.get_broker()
    ids = []
    for entry in json.load(sys.stdin):
        message = broker.get_actor(entry["actor"]).send_with_options(kwargs=entry.get("kwargs", {}), delay=entry.get("delay"))
        ids.append(message.message_id)
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
