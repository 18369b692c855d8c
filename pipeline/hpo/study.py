"""Optuna studies in shared storage, driven ask-and-tell across processes.

Storage: Optuna's ``RDBStorage`` on the project's own database server. It survives restarts
of every worker and of Redis, every worker and producer already reaches it, and it needs no
extra service (a journal on Redis would tie the study's durability to Redis persistence).
Optuna keeps its own tables and its own ``alembic_version`` row, which would collide with
the project's migrations, so its tables live apart: in the ``optuna`` schema on PostgreSQL
(created by the project's migration 0006) and in a sibling file next to a SQLite database.
Optuna creates and upgrades those tables itself (``optuna storage upgrade``).

A campaign asks trials here (``ask_trials``), a worker in another process reopens a trial
by its id to report epochs and ask the pruner, and the outcome is told once
(``tell_trial``; a second tell is ignored, so a stop and a finishing trial never clash).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from pipeline.errors import InvalidInput
from pipeline.hpo.space import SearchSpace

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

__all__ = [
    "OUTCOME_ATTR",
    "AskedTrial",
    "abandon_running",
    "ask_trials",
    "distributions",
    "load_study",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "open_study",
    "reopen_trial",
    "requeue",
    "settle",
    "storage_target",
    "tell_trial",
    "trial_outcome",
]

# Why a trial that Optuna holds as FAIL ended: "failed", "cancelled", "skipped", "duplicate".
OUTCOME_ATTR = "pfd_outcome"
OPTUNA_SCHEMA = "optuna"

# Optuna logs every trial at INFO; workers log their own job lines, so only its warnings count.
optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_target(database_url: str) -> tuple[str, dict[str, Any]]:
    """Return (URL, engine arguments) of the Optuna storage that goes with ``database_url``."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        stem, dot, suffix = path.rpartition(".")
        sibling = f"{stem}.optuna.{suffix}" if dot and "/" not in suffix else f"{path}.optuna"
        # Trial workers and the finalize callback write at once; wait out the writer.
        return f"sqlite:///{sibling}", {"connect_args": {"timeout": 30}}
    if database_url.startswith("postgresql"):
        return database_url, {"connect_args": {"options": f"-csearch_path={OPTUNA_SCHEMA}"}, "pool_pre_ping": True}
    return database_url, {"pool_pre_ping": True}


@functools.lru_cache(maxsize=4)
def open_storage(database_url: str) -> BaseStorage:
    """Return this process's Optuna storage for the project database ``database_url``."""
    url, engine_kwargs = storage_target(database_url)
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """``GridSampler`` for ask-and-tell: the campaign, not the sampler, decides when to stop.

    ``GridSampler.after_trial`` calls ``Study.stop()`` once the grid is covered, which raises
    outside ``Study.optimize``; the campaign plans exactly its number of trials instead.
    """

    def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
        """Do nothing (see the class docstring)."""


def make_sampler(method: str, space: SearchSpace, seed: int, n_asked: int) -> optuna.samplers.BaseSampler:
    """Return the sampler of ``method``: TPE, random or grid.

    A sampler is rebuilt for every wave, possibly in another process: TPE and random are
    seeded with ``seed + n_asked`` so a wave never repeats the draws of the one before. The
    grid keeps ``seed``: it maps trial numbers onto its (shuffled) points.
    """
    if method in ("bayesian", "hyperband"):
        return optuna.samplers.TPESampler(seed=seed + n_asked)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed + n_asked)
    if method == "grid":
        return _AskTellGridSampler(space.grid(), seed=seed)
    raise InvalidInput(f"unknown search method {method!r}")


def make_pruner(method: str, epochs: int) -> optuna.pruners.BasePruner:
    """Return Hyperband (epochs as the resource) for ``hyperband``, else no pruning."""
    if method == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Return the Optuna distribution of every parameter of ``space``."""
    dists: dict[str, BaseDistribution] = {}
    for p in space.params:
        if p.kind == "categorical":
            dists[p.name] = CategoricalDistribution(list(p.choices))
        elif p.kind == "int":
            dists[p.name] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))  # type: ignore[arg-type]
        else:
            dists[p.name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)  # type: ignore[arg-type]
    return dists


def open_study(
    storage: BaseStorage, name: str, *, direction: str, method: str, space: SearchSpace, seed: int, epochs: int,
) -> optuna.Study:
    """Create the study ``name`` or load it if it exists, with this wave's sampler and pruner."""
    n_asked = 0
    try:
        n_asked = len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        pass  # a new study: nothing asked yet
    return optuna.create_study(
        storage=storage, study_name=name, direction=optuna.study.StudyDirection[direction.upper()], load_if_exists=True,
        sampler=make_sampler(method, space, seed, n_asked), pruner=make_pruner(method, epochs),
    )


def load_study(storage: BaseStorage, name: str, *, method: str = "bayesian", epochs: int = 1) -> optuna.Study:
    """Load an existing study with the pruner its trials report to."""
    return optuna.load_study(study_name=name, storage=storage, pruner=make_pruner(method, epochs))


@dataclass(frozen=True)
class AskedTrial:
    """A trial asked from a study: its number, storage id and sampled parameters."""

    number: int
    trial_id: int
    params: dict[str, Any]


def ask_trials(study: optuna.Study, dists: dict[str, BaseDistribution], count: int) -> list[AskedTrial]:
    """Ask ``count`` trials, each with every parameter of ``dists`` sampled at once."""
    asked = []
    for _ in range(count):
        trial = study.ask(fixed_distributions=dists)
        # Optuna has no public handle to reopen a trial in another process but its id.
        asked.append(AskedTrial(trial.number, trial._trial_id, dict(trial.params)))
    return asked


def reopen_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """Return the live trial ``trial_id`` of ``study`` (to report epochs and ask the pruner)."""
    return optuna.Trial(study, trial_id)


def tell_trial(study: optuna.Study, number: int, *, value: float | None, outcome: str) -> bool:
    """Tell a trial's outcome once: "complete" (with ``value``), "pruned", or a failure reason.

    Returns false when the trial was already finished (the first tell wins), also when
    another process finished it between this one's look and its tell.
    """
    trials = study.get_trials(deepcopy=False)
    frozen = trials[number] if number < len(trials) else None
    if frozen is None or frozen.state.is_finished():
        return False
    if outcome == "complete":
        study.tell(number, value, skip_if_finished=True)
    elif outcome == "pruned":
        study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
    else:
        try:
            reopen_trial(study, frozen._trial_id).set_user_attr(OUTCOME_ATTR, outcome)
        except UpdateFinishedTrialError:
            return False
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    return True


def trial_outcome(study: optuna.Study, number: int) -> tuple[str, float | None]:
    """Return a trial's outcome as the study holds it: (state, value); "running" if not told yet."""
    frozen = study.get_trials(deepcopy=False)[number]
    if frozen.state == TrialState.COMPLETE:
        return "complete", frozen.value
    if frozen.state == TrialState.PRUNED:
        values = frozen.intermediate_values
        return "pruned", values[max(values)] if values else None
    if frozen.state == TrialState.FAIL:
        return frozen.user_attrs.get(OUTCOME_ATTR, "failed"), None
    return "running", None


def abandon_running(study: optuna.Study, outcome: str = "cancelled") -> list[int]:
    """Tell every trial still running (asked, never told) that it ended with ``outcome``; return their numbers."""
    numbers = [t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for number in numbers:
        tell_trial(study, number, value=None, outcome=outcome)
    return numbers


def requeue(study: optuna.Study, params: list[dict[str, Any]]) -> None:
    """Queue these parameter sets so the next trials asked run them again (a resume)."""
    for values in params:
        study.enqueue_trial(values, skip_if_exists=False)


def settle(study: optuna.Study, numbers: list[int], fallback: Callable[[int], str]) -> dict[int, dict[str, Any]]:
    """Return the outcome of each trial as the study holds it.

    A trial the study still holds as running never told it (its job was skipped, lost or
    dead-lettered): it is told now that it ended with ``fallback(number)``.
    """
    outcomes = {}
    for number in numbers:
        state, value = trial_outcome(study, number)
        if state == "running":
            state = fallback(number)
            if not tell_trial(study, number, value=None, outcome=state):
                state, value = trial_outcome(study, number)  # told meanwhile elsewhere: that outcome stands
        outcomes[number] = {"state": state, "value": value}
    return outcomes
