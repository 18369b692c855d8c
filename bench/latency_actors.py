"""Actors for the latency benchmark: a quick job whose caller reads its result, and heavy work.

Loaded by the Procfile's worker lines beside ``actors.app`` (``actors.app bench.latency_actors``).
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from actors.app import broker  # noqa: F401  (the broker, set up before these actors bind to it)
from actors.platform.base import Payload, job_actor
from actors.platform.context import JobContext
from config.queues import CPU_PROCESSING, GPU_TRAINING, HIGH_PRIORITY, ActorPolicy
from pipeline.errors import StopRequested

__all__ = ["bench_burn_cpu", "bench_burn_gpu", "bench_echo"]


class Nothing(Payload):
    """No arguments."""


class Burn(Payload):
    """How long to keep the processor busy."""

    seconds: float = Field(gt=0, le=600)


@job_actor(schema=Nothing, name="bench_echo",
           policy=ActorPolicy(HIGH_PRIORITY, time_limit_ms=10_000, store_results=True))
def bench_echo(payload: Nothing, job: JobContext) -> int:
    """Return 1 through the results backend: a round trip's whole cost is the platform's."""
    return 1


def _burn(seconds: float, job: JobContext) -> None:
    # Matrix products on every core (as training does), a progress report each round.
    a = np.random.default_rng(0).standard_normal((400, 400))
    started, rounds = time.monotonic(), 0
    while (elapsed := time.monotonic() - started) < seconds:
        for _ in range(20):
            a = np.tanh(a @ a.T / 400)
        rounds += 1
        # The benchmark reads the heavy queues' throughput from this count.
        job.progress(min(elapsed / seconds, 1.0), f"burning: {rounds} rounds")
        if job.should_stop():
            raise StopRequested("cancelled")


@job_actor(schema=Burn, name="bench_burn_gpu", policy=ActorPolicy(GPU_TRAINING, time_limit_ms=700_000))
def bench_burn_gpu(payload: Burn, job: JobContext) -> None:
    """Heavy work on the training queue."""
    _burn(payload.seconds, job)


@job_actor(schema=Burn, name="bench_burn_cpu", policy=ActorPolicy(CPU_PROCESSING, time_limit_ms=700_000))
def bench_burn_cpu(payload: Burn, job: JobContext) -> None:
    """Heavy work on the CPU queue."""
    _burn(payload.seconds, job)
