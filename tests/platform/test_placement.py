"""CPU placement: the heavy queues' workers yield the CPU to the urgent ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from actors.platform.placement import parse_cpu_list, placement_for
from config.settings import Settings

FOUR = frozenset(range(4))
TWO = frozenset(range(2))


def _settings(**values: object) -> Settings:
    return Settings(**values)


def test_heavy_workers_yield_and_urgent_ones_keep_the_defaults():
    settings = _settings(heavy_worker_nice=7, heavy_worker_policy="idle", urgent_cpus="")
    heavy = placement_for(["cpu_processing"], settings, TWO)
    assert (heavy.heavy, heavy.nice, heavy.policy, heavy.cpus) == (True, 7, "idle", None)
    urgent = placement_for(["high_priority"], settings, TWO)
    assert (urgent.heavy, urgent.nice, urgent.policy, urgent.cpus) == (False, 0, "other", None)
    # A worker that mixes heavy and urgent queues is not slowed (its urgent work would be).
    assert placement_for(["gpu_training", "high_priority"], settings, TWO).nice == 0


def test_auto_reserves_the_first_cpu_for_urgent_work_where_another_is_left():
    settings = _settings(urgent_cpus="auto")
    assert placement_for(["gpu_training"], settings, FOUR).cpus == {1, 2, 3}
    assert placement_for(["notifications"], settings, FOUR).cpus == {0}
    assert placement_for(["gpu_training"], settings, TWO).cpus == {1}
    assert placement_for(["high_priority"], settings, TWO).cpus == {0}
    assert placement_for(["gpu_training"], settings, frozenset({3})).cpus is None


def test_an_explicit_cpu_list_is_checked_against_the_cpus_the_process_may_use():
    assert parse_cpu_list("0,2-3") == {0, 2, 3}
    assert placement_for(["cpu_processing"], _settings(urgent_cpus="0-1"), FOUR).cpus == {2, 3}
    with pytest.raises(ValueError, match="names CPUs this process cannot use"):
        placement_for(["cpu_processing"], _settings(urgent_cpus="5"), FOUR)
    with pytest.raises(ValueError, match="reserves every CPU"):
        placement_for(["cpu_processing"], _settings(urgent_cpus="0-1"), TWO)
    with pytest.raises(ValidationError, match="urgent_cpus"):
        _settings(urgent_cpus="first")


def _group_pythons(leader: int) -> list[int]:
    """The Python processes of process group ``leader`` (the worker's main and its children)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == leader and b"python" in command:
            pids.append(int(stat.parent.name))
    return pids


def test_the_procfile_workers_run_with_their_placement(workers):
    settings = Settings()
    policies = {"other": os.SCHED_OTHER, "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE}
    heavy_policy = policies[settings.heavy_worker_policy]
    assert heavy_policy == os.SCHED_IDLE  # the measured default
    for name, nice, policy in (("cpu_processing", settings.heavy_worker_nice, heavy_policy),
                               ("gpu_training", settings.heavy_worker_nice, heavy_policy),
                               ("high_priority", 0, os.SCHED_OTHER)):
        pids = _group_pythons(workers.processes[name].pid)
        assert pids, f"no {name} worker process found"
        for pid in pids:
            assert os.getpriority(os.PRIO_PROCESS, pid) == nice, name
            assert os.sched_getscheduler(pid) == policy, name
        assert '"worker.placement"' in workers.log(name)
    # PFD_CPU_PROCESSES (2 in the tests) still sets the heavy worker's process count.
    assert len(_group_pythons(workers.processes["cpu_processing"].pid)) >= 1 + 2
