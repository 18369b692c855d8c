"""Queue topology and every actor's limits, in one table ops can read at a glance.

Dramatiq's defaults (10-minute limit, 20 retries over a week) fit none of our actors, so
every actor takes its queue, time limit, retries, backoff and result storage from here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

__all__ = [
    "ACTOR_POLICIES",
    "CPU_PROCESSING",
    "CRASH_GUARDED_QUEUES",
    "GPU_TRAINING",
    "HIGH_PRIORITY",
    "NOTIFICATIONS",
    "QUEUES",
    "RETRIED_ERRORS",
    "ActorPolicy",
    "policy_for",
    "retried_error_types",
]

HIGH_PRIORITY = "high_priority"
GPU_TRAINING = "gpu_training"
CPU_PROCESSING = "cpu_processing"
NOTIFICATIONS = "notifications"
QUEUES = (HIGH_PRIORITY, GPU_TRAINING, CPU_PROCESSING, NOTIFICATIONS)
# Queues of heavy work, where a job can take its process down (memory, native code): each
# start is counted in Redis (one round trip, small beside the job) so a message that kills
# every worker that starts it is dead-lettered. Short-job queues skip the round trip.
CRASH_GUARDED_QUEUES = (GPU_TRAINING, CPU_PROCESSING)

# Transient faults, retried with exponential backoff and jitter. Anything else (bad
# input, a hit time limit, a cancellation, a bug) is never retried.
RETRIED_ERRORS = (
    "redis.exceptions.ConnectionError",
    "redis.exceptions.TimeoutError",
    "redis.exceptions.BusyLoadingError",
    "sqlalchemy.exc.OperationalError",
    "sqlalchemy.exc.DisconnectionError",
    "dramatiq.errors.ConnectionError",
    "actors.platform.errors.TransientError",
)

_SECOND = 1_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE


@dataclass(frozen=True)
class ActorPolicy:
    """Where an actor runs and how long, how often and how patiently it is retried."""

    queue: str
    time_limit_ms: int
    max_retries: int = 3
    min_backoff_ms: int = 1 * _SECOND
    max_backoff_ms: int = 5 * _MINUTE
    store_results: bool = False
    retried: tuple[str, ...] = field(default=RETRIED_ERRORS)
    # False: a final failure is announced as ``job.failed``; True: the actor sends its own
    # failure event (``training.failed``, ``hpo.failed``), or is the notifier itself.
    reports_own_failures: bool = False

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"unknown queue {self.queue!r}; queues are {QUEUES}")


ACTOR_POLICIES: dict[str, ActorPolicy] = {
    # cpu_processing: data generation and import.
    "generate_dataset": ActorPolicy(CPU_PROCESSING, time_limit_ms=2 * _HOUR, store_results=True),
    "import_mat_dataset": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, store_results=True),
    "import_table_dataset": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, store_results=True),
    # cpu_processing: quality runs. A failing suite is no transient fault: never retried.
    "run_test_suite": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, max_retries=0, store_results=True),
    "run_benchmarks": ActorPolicy(CPU_PROCESSING, time_limit_ms=2 * _HOUR, max_retries=0, store_results=True),
    "run_quality_checks": ActorPolicy(CPU_PROCESSING, time_limit_ms=30 * _MINUTE, max_retries=0, store_results=True),
    # high_priority: quick control work and maintenance.
    "cancel_job": ActorPolicy(HIGH_PRIORITY, time_limit_ms=30 * _SECOND, max_retries=5),
    "reap_stale_jobs": ActorPolicy(HIGH_PRIORITY, time_limit_ms=2 * _MINUTE, max_retries=1),
    "clean_artifacts": ActorPolicy(HIGH_PRIORITY, time_limit_ms=10 * _MINUTE, max_retries=1),
    "report_dead_letters": ActorPolicy(HIGH_PRIORITY, time_limit_ms=2 * _MINUTE, max_retries=1),
    # gpu_training: one accelerator job at a time; a redelivered run resumes from its checkpoint.
    "train_model": ActorPolicy(GPU_TRAINING, time_limit_ms=12 * _HOUR, max_retries=2, store_results=True, reports_own_failures=True),
    # explanations: one signal per cpu_processing job; a batch fans out and is finalized quickly.
    "explain_signal": ActorPolicy(CPU_PROCESSING, time_limit_ms=10 * _MINUTE, max_retries=2, store_results=True),
    "explain_batch": ActorPolicy(HIGH_PRIORITY, time_limit_ms=60 * _SECOND, max_retries=2, store_results=True),
    "finalize_explain_batch": ActorPolicy(HIGH_PRIORITY, time_limit_ms=2 * _MINUTE, max_retries=3, store_results=True),
    # features and evaluation: cpu_processing; a sharded extraction is merged on high_priority.
    "extract_features": ActorPolicy(CPU_PROCESSING, time_limit_ms=2 * _HOUR, store_results=True),
    "extract_feature_shard": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, store_results=True),
    "merge_feature_shards": ActorPolicy(HIGH_PRIORITY, time_limit_ms=10 * _MINUTE, store_results=True),
    "compute_importance": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, store_results=True),
    "select_features": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, store_results=True),
    "compute_correlation": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, store_results=True),
    "roc_analysis": ActorPolicy(CPU_PROCESSING, time_limit_ms=10 * _MINUTE, store_results=True),
    "error_analysis": ActorPolicy(CPU_PROCESSING, time_limit_ms=10 * _MINUTE, store_results=True),
    "compare_architectures": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, store_results=True),
    "robustness_report": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, store_results=True),
    # HPO/NAS campaigns: control and wave callbacks on high_priority, trials and candidates on gpu_training.
    "run_hpo_campaign": ActorPolicy(HIGH_PRIORITY, time_limit_ms=2 * _MINUTE, max_retries=3, store_results=True),
    "finalize_hpo_campaign": ActorPolicy(HIGH_PRIORITY, time_limit_ms=10 * _MINUTE, max_retries=3, store_results=True),
    "stop_hpo_campaign": ActorPolicy(HIGH_PRIORITY, time_limit_ms=1 * _MINUTE, max_retries=3, store_results=True),
    "run_hpo_trial": ActorPolicy(GPU_TRAINING, time_limit_ms=12 * _HOUR, max_retries=2, store_results=True, reports_own_failures=True),
    "run_nas_campaign": ActorPolicy(HIGH_PRIORITY, time_limit_ms=2 * _MINUTE, max_retries=3, store_results=True),
    "finalize_nas_campaign": ActorPolicy(HIGH_PRIORITY, time_limit_ms=10 * _MINUTE, max_retries=3, store_results=True),
    "stop_nas_campaign": ActorPolicy(HIGH_PRIORITY, time_limit_ms=1 * _MINUTE, max_retries=3, store_results=True),
    "run_nas_candidate": ActorPolicy(GPU_TRAINING, time_limit_ms=2 * _HOUR, max_retries=2, store_results=True, reports_own_failures=True),
    # deployment: export -> optimize -> quantize -> benchmark as one pipeline; launching it is quick.
    "deploy_experiment": ActorPolicy(CPU_PROCESSING, time_limit_ms=60 * _SECOND, max_retries=2, store_results=True),
    "export_onnx": ActorPolicy(CPU_PROCESSING, time_limit_ms=30 * _MINUTE, max_retries=1, store_results=True),
    "optimize_model": ActorPolicy(CPU_PROCESSING, time_limit_ms=30 * _MINUTE, max_retries=1, store_results=True),
    "quantize_model": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, max_retries=1, store_results=True),
    "benchmark_models": ActorPolicy(CPU_PROCESSING, time_limit_ms=1 * _HOUR, max_retries=1, store_results=True),
    # notifications: slow I/O; a channel's transient failure is retried with backoff.
    "relay_events": ActorPolicy(HIGH_PRIORITY, time_limit_ms=2 * _MINUTE, max_retries=1),
    "notify": ActorPolicy(
        NOTIFICATIONS, time_limit_ms=60 * _SECOND, max_retries=5, min_backoff_ms=1 * _SECOND,
        max_backoff_ms=5 * _MINUTE, reports_own_failures=True,
    ),
}


def policy_for(actor_name: str) -> ActorPolicy:
    """Return the policy of ``actor_name``; a missing entry is a programming error."""
    try:
        return ACTOR_POLICIES[actor_name]
    except KeyError:
        raise KeyError(f"actor {actor_name!r} has no entry in config.queues.ACTOR_POLICIES") from None


def retried_error_types(names: tuple[str, ...] = RETRIED_ERRORS) -> tuple[type[BaseException], ...]:
    """Resolve dotted exception names to classes (imported lazily to keep config light)."""
    types: list[type[BaseException]] = []
    for dotted in names:
        module_name, _, attr = dotted.rpartition(".")
        types.append(getattr(importlib.import_module(module_name), attr))
    return tuple(types)
