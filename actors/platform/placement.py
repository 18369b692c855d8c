"""CPU placement of a worker process: the heavy queues' workers yield the CPU to the urgent ones.

A worker of ``gpu_training`` or ``cpu_processing`` that fills every core makes a
``high_priority`` job (a cancel, a campaign stop) wait for a time slice. ``pfd worker``
applies a placement before Dramatiq starts its processes and threads, which inherit it:
heavy workers get an added niceness, a scheduling policy that does not preempt on wake-up
(or runs only on idle CPUs) and the CPUs left after the urgent ones; urgent workers get the
reserved CPUs. The settings are in ``config.settings`` (``heavy_worker_*``, ``urgent_cpus``);
``bench/bench_latency.py`` measures each option.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from config.queues import CRASH_GUARDED_QUEUES
from config.settings import Settings

__all__ = ["Placement", "apply_placement", "parse_cpu_list", "placement_for"]

_POLICIES = {"other": os.SCHED_OTHER, "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE}
# "auto" reserves CPU 0 wherever another CPU is left for the heavy queues: on 2 CPUs it was the
# only placement that kept the urgent tail within 1.5x (docs/operations.md, "Urgent work under load").
_AUTO_RESERVE_FROM = 2


@dataclass(frozen=True)
class Placement:
    """What a worker process runs with: added niceness, scheduling policy, CPUs (None: all)."""

    heavy: bool
    nice: int = 0
    policy: str = "other"
    cpus: frozenset[int] | None = None

    def describe(self) -> dict[str, object]:
        """The placement as log fields."""
        return {"heavy": self.heavy, "nice": self.nice, "policy": self.policy,
                "cpus": sorted(self.cpus) if self.cpus is not None else "all"}


def parse_cpu_list(text: str) -> frozenset[int]:
    """CPUs named by a list like ``"0,2-3"`` (the format of taskset and cgroups' cpusets)."""
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


def _reserved(setting: str, available: frozenset[int]) -> frozenset[int]:
    if setting == "auto":
        return frozenset({min(available)}) if len(available) >= _AUTO_RESERVE_FROM else frozenset()
    reserved = parse_cpu_list(setting)
    if not reserved <= available:
        raise ValueError(f"PFD_URGENT_CPUS={setting!r} names CPUs this process cannot use "
                         f"(it may use {sorted(available)})")
    if reserved == available:
        raise ValueError(f"PFD_URGENT_CPUS={setting!r} reserves every CPU this process may use; "
                         "the heavy queues would have none")
    return reserved


def placement_for(queues: Iterable[str], settings: Settings, available: frozenset[int]) -> Placement:
    """The placement of a worker consuming ``queues`` on a host whose usable CPUs are ``available``.

    A worker is heavy when every queue it consumes is a heavy one; a worker that mixes heavy
    and urgent queues keeps the defaults, so its urgent work is not slowed.
    """
    queues = {q.removesuffix(".DQ") for q in queues}
    reserved = _reserved(settings.urgent_cpus, available)
    if queues and queues <= set(CRASH_GUARDED_QUEUES):
        return Placement(heavy=True, nice=settings.heavy_worker_nice, policy=settings.heavy_worker_policy,
                         cpus=available - reserved if reserved else None)
    if queues.isdisjoint(CRASH_GUARDED_QUEUES):
        return Placement(heavy=False, cpus=reserved or None)
    return Placement(heavy=False)


def apply_placement(placement: Placement) -> None:
    """Apply ``placement`` to this process; the processes and threads it starts later inherit it."""
    if placement.nice:
        os.nice(placement.nice)
    if placement.policy != "other":
        os.sched_setscheduler(0, _POLICIES[placement.policy], os.sched_param(0))
    if placement.cpus is not None:
        os.sched_setaffinity(0, placement.cpus)
