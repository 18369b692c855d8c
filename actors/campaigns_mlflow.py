"""HPO and NAS campaigns in MLflow: a parent run per campaign, one nested run per trial or candidate.

A trial's run is written once it is final (its params, its value, its state: complete,
pruned, failed, cancelled or skipped), so MLflow's comparison views list every trial the
study told. The campaign's run holds its search settings and, once it ends, the best value.
Everything goes through the process's background writer; without
``PFD_MLFLOW_TRACKING_URI`` these functions do nothing.
"""

from __future__ import annotations

from typing import Any

from actors.platform.mlflow_runs import TrackedRun, flat_params
from actors.platform.mlflow_writer import MlflowWriter, mlflow_writer
from actors.store.campaigns import FINAL_TRIAL_STATES
from actors.store.db import Database
from config.settings import get_settings

__all__ = ["track_campaign_end", "track_trials"]

# MLflow's run states for a trial's or a campaign's outcome.
_RUN_STATUS = {"complete": "FINISHED", "completed": "FINISHED", "failed": "FAILED"}


def _campaign_run(writer: MlflowWriter, database: Database, view: dict[str, Any], *, reopen: bool) -> TrackedRun:
    run = TrackedRun(writer, database, experiment=get_settings().mlflow_experiment, kind="campaign",
                     record_id=view["campaign_id"], name=view["name"] or view["campaign_id"], reopen=reopen,
                     tags={"pfd.campaign_id": view["campaign_id"], "pfd.kind": view["kind"],
                           "pfd.dataset_id": view["dataset_id"]})
    run.params({"kind": view["kind"], "method": view["method"], "metric": view["metric"],
                "direction": view["direction"], "n_trials": str(view["n_trials"]),
                "parallelism": str(view["parallelism"]), "dataset_id": view["dataset_id"]})
    return run


def track_trials(database: Database, view: dict[str, Any], numbers: list[int]) -> None:
    """Write the nested run of each of ``numbers`` that is final in ``view`` (a campaign's record)."""
    writer = mlflow_writer(get_settings())
    if writer is None:
        return
    final = [n for n in numbers if view["trials"][str(n)]["state"] in FINAL_TRIAL_STATES]
    if not final:
        return
    parent = _campaign_run(writer, database, view, reopen=False)
    for number in final:
        entry, record_id = view["trials"][str(number)], f"{view['campaign_id']}-t{number}"
        run = TrackedRun(writer, database, experiment=get_settings().mlflow_experiment, kind="trial",
                         record_id=record_id, name=f"trial {number}", parent=parent,
                         tags={"pfd.campaign_id": view["campaign_id"], "pfd.trial_number": number,
                               "pfd.trial_state": entry["state"], "pfd.job_id": entry.get("message_id") or "",
                               "pfd.experiment_id": entry.get("experiment_id") or "",
                               "pfd.arch_hash": entry.get("arch_hash") or ""})
        run.params(flat_params("", entry.get("params") or {}))
        # A NAS candidate also carries its size and speed figures.
        figures = {k: v for k, v in (entry.get("metrics") or {}).items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        run.metrics({**figures, view["metric"]: entry.get("value")})
        run.end(_RUN_STATUS.get(entry["state"], "KILLED"))


def track_campaign_end(database: Database, view: dict[str, Any]) -> None:
    """Close the campaign's run with its best value once it has ended (completed, failed or cancelled)."""
    writer = mlflow_writer(get_settings())
    if writer is None or view["status"] == "running":
        return
    run = _campaign_run(writer, database, view, reopen=False)
    run.metrics({f"best_{view['metric']}": view["best_value"], "trials_done": view["trials_done"]})
    run.tags({"pfd.status": view["status"], "pfd.best_experiment": (view["best"] or {}).get("experiment_id", "")})
    run.end(_RUN_STATUS.get(view["status"], "KILLED"))
