"""The full stack's no-op drain at this checkout against an earlier revision, in one run.

A change to the job platform (job trees: parent and root on every job, a log line at every
start) must keep the full stack's drain within 10 % of the revision before it. This checks
out ``--baseline`` into a temporary worktree and drains ``n`` no-op messages with each
stack in turn (``bench_dispatch.drain_full_stack``: the Procfile's ``high_priority`` line,
the recorder writing every row), ``rounds`` times interleaved, as each revision's own code
runs it; the ratio is of the medians.

``python -m bench.bench_versus --baseline REV [--n N] [--rounds R]``; figures in
``bench/results/versus_<REV>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.processes import ROOT

__all__ = ["run"]

_DRAIN = """
import json
from redis import Redis
from bench.bench_dispatch import drain_full_stack
from bench.processes import bench_env, migrate
env = bench_env({redis_url!r})
migrate(env)
print(json.dumps(drain_full_stack({n}, env, Redis.from_url({redis_url!r}))))
"""


def _drain(checkout: Path, n: int, redis_url: str) -> dict[str, Any]:
    """One drain of ``n`` messages by the full stack of ``checkout``'s code."""
    done = subprocess.run([sys.executable, "-c", _DRAIN.format(n=n, redis_url=redis_url)], cwd=checkout,
                          env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the drain at {checkout} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(baseline: str, n: int = 10_000, rounds: int = 3, redis_url: str = "redis://127.0.0.1:6379/12") -> dict[str, Any]:
    """Drain ``n`` no-op messages ``rounds`` times with each revision; return both medians and their ratio."""
    revision = subprocess.run(["git", "rev-parse", "--short", baseline], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="pfd-baseline-") as folder:
        checkout = Path(folder) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(checkout), revision], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            drains: dict[str, list[float]] = {"head": [], "baseline": []}
            for _ in range(rounds):
                for name, where in (("baseline", checkout), ("head", ROOT)):
                    drains[name].append(_drain(where, n, redis_url)["drain_per_s"])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=True)
    medians = {name: statistics.median(rates) for name, rates in drains.items()}
    figures = {
        "baseline": revision, "head": head, "n": n, "rounds": rounds, "drain_per_s": drains,
        "median_drain_per_s": medians, "head_over_baseline": round(medians["head"] / medians["baseline"], 3),
        "goal": "head within 10 % of baseline (ratio >= 0.9)",
    }
    figures["goal_met"] = figures["head_over_baseline"] >= 0.9
    write_result(f"versus_{revision}", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_versus")
    parser.add_argument("--baseline", required=True, help="the revision to compare with (e.g. the commit before a change)")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.baseline, arguments.n, arguments.rounds), indent=2))
