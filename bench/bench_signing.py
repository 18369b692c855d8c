"""Signed messages and TLS: what they cost the full stack's no-op drain, and signing per body.

The Procfile's ``high_priority`` line (prefetch 64, job records, the recorder) drains ``n``
queued no-op messages on three stacks, interleaved over ``rounds`` (this machine's speed
moves by a third from run to run: ratios are taken within a run, each stack's median over
the rounds). Every stack uses a ``redis-server`` and a PostgreSQL cluster of the benchmark's
own, set up alike:

- ``plain``: Redis without TLS or password, PostgreSQL over its Unix socket;
- ``signed``: the same, with ``PFD_MESSAGE_KEYS`` set;
- ``secured``: signed, Redis over TLS as an ACL user (``rediss://``, ``PFD_REDIS_CA_FILE``),
  PostgreSQL over TCP with TLS and a password (``sslmode=verify-full``): the wire of a
  deployment across hosts.

Beside it, the encoder alone: microseconds to sign and to verify one such body. Goal (issue
#21): the signed drain, and the secured one, within 15 % of the plain one.

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

from actors.platform.broker.signing import SigningEncoder
from bench.bench_dispatch import drain_full_stack
from bench.common import scratch_dir, write_result
from bench.processes import bench_env, migrate
from tests.servers import PostgresCluster, RedisServer, write_tls_certificates

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


def run(n: int = 10_000, rounds: int = 3) -> dict[str, Any]:
    """Drain ``n`` no-op messages on the three stacks, ``rounds`` times interleaved; write the medians."""
    folder = scratch_dir("pfd-bench-signing-")
    tls = write_tls_certificates(folder / "tls")
    keys = {"PFD_MESSAGE_KEYS": json.dumps(_KEYS)}
    plain_redis = RedisServer(folder / "redis", appendonly=False).start()
    tls_redis = RedisServer(folder / "redis-tls", appendonly=False, tls=tls, user=("pfd", "p" * 32)).start()
    postgres = PostgresCluster(tls=tls, user="pfd", password="q" * 32).start()
    try:
        over_socket = f"postgresql+psycopg://pfd@/pfd?host={postgres.root}&port={postgres.port}"
        stacks = {
            "plain": (bench_env(plain_redis.url(), PFD_DATABASE_URL=over_socket), plain_redis.client()),
            "signed": (bench_env(plain_redis.url(), PFD_DATABASE_URL=over_socket, **keys), plain_redis.client()),
            "secured": (bench_env(tls_redis.url(), PFD_DATABASE_URL=postgres.url(),
                                  PFD_REDIS_CA_FILE=str(tls["ca"]), **keys), tls_redis.client()),
        }
        migrate(stacks["plain"][0])
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in stacks}
        for _ in range(rounds):
            for name, (env, redis) in stacks.items():
                runs[name].append(drain_full_stack(n, env, redis))
    finally:
        postgres.stop()
        tls_redis.stop()
        plain_redis.stop()
    medians = {name: {key: round(statistics.median(r[key] for r in rs)) for key in ("enqueue_per_s", "drain_per_s")}
               for name, rs in runs.items()}
    ratios = {f"{name}_over_plain_drain": round(medians[name]["drain_per_s"] / medians["plain"]["drain_per_s"], 3)
              for name in ("signed", "secured")}
    figures = {"messages": n, "rounds": rounds, "stacks": medians, "runs": runs, "per_body": _per_body_us(),
               **ratios, "goal": 0.85, "meets_goal": min(ratios.values()) >= 0.85}
    write_result("signing", figures)
    return figures


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000), indent=2, default=str))
