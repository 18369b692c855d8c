"""Signed messages: what HMAC signing costs the full stack's no-op drain, and per body.

The Procfile's ``high_priority`` line (prefetch 64, job records, the recorder) drains ``n``
queued no-op messages with ``PFD_MESSAGE_KEYS`` unset and set, interleaved over ``rounds``
(this machine's speed moves by a third from run to run: ratios are taken within a run,
each stack's median over the rounds). Beside it, the encoder alone: microseconds to sign and
to verify one such body. Goal (issue #21): the signed drain within 15 % of the plain one.

Run ``python -m bench.bench_signing [n]``; figures in ``bench/results/signing.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import timeit
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dramatiq.encoder import JSONEncoder
from dramatiq.message import Message
from redis import Redis

from actors.platform.broker.signing import SigningEncoder
from bench.bench_dispatch import drain_full_stack
from bench.common import write_result
from bench.processes import bench_env, migrate

__all__ = ["run"]

_KEYS = ["a" * 64, "b" * 64]  # a rotation under way: two keys held


def _per_body_us() -> dict[str, float]:
    """Microseconds to encode and decode one no-op message body, plain and signed."""
    data = Message(queue_name="high_priority", actor_name="bench_noop", args=(), kwargs={},
                   options={"redis_message_id": "0" * 36}).asdict()
    plain, signed = JSONEncoder(), SigningEncoder([key.encode() for key in _KEYS])
    figures = {}
    for name, encoder in (("plain", plain), ("signed", signed)):
        body = encoder.encode(data)
        for step, call in (("encode", lambda e=encoder: e.encode(data)), ("decode", lambda e=encoder, b=body: e.decode(b))):
            figures[f"{name}_{step}_us"] = round(min(timeit.repeat(call, number=20_000, repeat=5)) / 20_000 * 1e6, 2)
    return figures


def run(n: int = 10_000, rounds: int = 3, redis_url: str = "redis://127.0.0.1:6379/12") -> dict[str, Any]:
    """Drain ``n`` no-op messages plain and signed, ``rounds`` times interleaved; write the medians."""
    env = {"plain": bench_env(redis_url), "signed": bench_env(redis_url, PFD_MESSAGE_KEYS=json.dumps(_KEYS))}
    migrate(env["plain"])
    migrate(env["signed"])
    redis = Redis.from_url(redis_url)
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "signed": []}
    for _ in range(rounds):
        for name in runs:
            runs[name].append(drain_full_stack(n, env[name], redis))
    redis.flushdb()
    medians = {name: {key: round(statistics.median(r[key] for r in rs)) for key in ("enqueue_per_s", "drain_per_s")}
               for name, rs in runs.items()}
    ratio = round(medians["signed"]["drain_per_s"] / medians["plain"]["drain_per_s"], 3)
    figures = {"messages": n, "rounds": rounds, "stacks": medians, "runs": runs, "per_body": _per_body_us(),
               "signed_over_plain_drain": ratio, "goal": 0.85, "meets_goal": ratio >= 0.85}
    write_result("signing", figures)
    return figures


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000), indent=2, default=str))
