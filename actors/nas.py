"""NAS campaigns as fan-out: architecture candidates trained briefly as groups on ``gpu_training``.

``run_nas_campaign`` checks the space and sends waves of candidates, sampled at random or by
Optuna's TPE over the architecture parameters and de-duplicated by architecture hash (a
duplicate is told to the study and skipped, never trained). Each candidate
(``run_nas_candidate``) is built as a real network, measured (parameters, FLOPs, latency,
size) and trained on the campaign's dataset, scored on validation. ``finalize_nas_campaign``
ends the campaign with the best candidate, the accuracy/size Pareto front and, if asked, the
best registered as a pending experiment ready for full training (model ``nas_net``, whose
arguments are the architecture: ``train_model`` trains it); it sends ``nas.completed``, or
``nas.failed`` when no candidate completed. ``resume=True`` continues a stopped or crashed
campaign: a candidate already trained is reported from its record, never trained again.
"""

from __future__ import annotations

from typing import Any

from actors.campaigns import (
    CampaignRef,
    CampaignStart,
    Flavor,
    TrialPayload,
    begin_trial,
    campaign_event,
    finalize_campaign,
    finish_trial,
    load_dataset,
    project_database,
    start_campaign,
    stop_campaign,
    summary,
)
from actors.platform.base import job_actor
from actors.platform.catalog import option_row, options_of_dataclass
from actors.platform.context import JobContext
from actors.platform.errors import RecordConflict, RecordNotFound, StoreError
from actors.store.campaigns import (
    claim_candidate,
    list_candidates,
    record_trials,
    start_candidate,
    update_candidate,
)
from actors.store.db import Database
from actors.store.experiments import create_experiment
from actors.training import experiment_spec, ready_dataset, training_option_rows
from config.settings import get_settings, mask_secrets
from pipeline.errors import InvalidInput, StopRequested
from pipeline.nas import arch_from_params, arch_hash, pareto_front, parse_nas_campaign
from pipeline.nas.campaign import NAS_METHODS, NasCampaignSpec
from pipeline.nas.space import OPS
from pipeline.training.config import TrainingConfig

__all__ = ["NAS", "NAS_MODEL_KEY", "RunNasCampaign", "finalize_nas_campaign", "run_nas_campaign", "run_nas_candidate",
           "stop_nas_campaign"]

# The model key a registered NAS winner is trained under (``pipeline.nas.model.NasNet``).
NAS_MODEL_KEY = "nas_net"
# Samples drawn per candidate wanted before a wave gives up on finding new architectures.
_ASK_ATTEMPTS = 20


class RunNasCampaign(CampaignStart):
    """A new NAS campaign (``dataset_id`` + ``spec``), or a resume."""

    parse_spec = staticmethod(parse_nas_campaign)

    @classmethod
    def documented_options(cls) -> dict[str, list[dict[str, Any]]]:
        """The NAS spec's fields and its search space's; ``training`` is ``train_model``'s."""
        space = [option_row("min_layers", "int", 1), option_row("max_layers", "int", 4),
                 option_row("ops", "list", list(OPS), allowed=OPS, description="at least one convolution"),
                 option_row("widths", "list[int]", [8, 16, 32]),
                 option_row("stem_widths", "list[int]", description="default: the first of widths")]
        spec = options_of_dataclass(NasCampaignSpec, {"method": NAS_METHODS}, {
            "space": "the search space (spec.space below; every key has a default)",
            "training": "train_model's training options"})
        # A NAS campaign always maximises validation accuracy; the parser fills in an empty space.
        spec = [{**row, "required": False} for row in spec if row["name"] not in ("metric", "direction")]
        return {"spec": spec, "spec.space": space, "spec.training": training_option_rows()}


def _nas_study(view: dict[str, Any]) -> Any:
    from pipeline.hpo.study import open_storage, open_study

    spec = parse_nas_campaign(view["spec"])
    method = "bayesian" if spec.method == "tpe" else "random"
    return open_study(open_storage(get_settings().database_url), view["study_name"], direction="maximize",
                      method=method, space=spec.space.search_space(), seed=spec.seed, epochs=1)


def _nas_ask(database: Database, view: dict[str, Any], study: Any, count: int) -> list[Any]:
    """Ask until ``count`` new architectures are claimed; duplicates are told to the study and skipped."""
    from pipeline.hpo.study import ask_trials, distributions, tell_trial

    dists = distributions(parse_nas_campaign(view["spec"]).space.search_space())
    asked: list[Any] = []
    duplicates: dict[int, dict[str, Any]] = {}
    for _ in range(count * _ASK_ATTEMPTS):
        if len(asked) == count:
            break
        [trial] = ask_trials(study, dists, 1)
        arch = arch_from_params(trial.params)
        claimed, candidate = claim_candidate(database, view["campaign_id"], arch_hash(arch), arch, trial.number)
        if claimed:
            asked.append(trial)
            continue
        tell_trial(study, trial.number, value=None, outcome="duplicate")
        duplicates[trial.number] = {"state": "duplicate", "params": trial.params, "arch_hash": candidate["arch_hash"],
                                    "duplicate_of": candidate["trial_number"]}
    record_trials(database, view["campaign_id"], duplicates)
    return asked


def _nas_conclude(database: Database, view: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Record the best candidate and the Pareto front; register the best for full training; return it and its event."""
    spec = parse_nas_campaign(view["spec"])
    done = [{"arch_hash": c["arch_hash"], "arch": c["arch"], "trial_number": c["trial_number"], **c["metrics"]}
            for c in list_candidates(database, view["campaign_id"]) if c["status"] == "complete"]
    best = max(done, key=lambda c: (c["val_accuracy"], -c["parameter_count"]))
    front = [{k: c[k] for k in ("arch_hash", "trial_number", "val_accuracy", "parameter_count", "size_bytes")}
             for c in pareto_front(done)]
    result = {**view["best"], "arch": best["arch"], "arch_hash": best["arch_hash"], "value": best["val_accuracy"],
              "metrics": {k: v for k, v in best.items() if k not in ("arch", "arch_hash")}, "pareto": front}
    if spec.register_best:
        experiment_id = f"{view['campaign_id']}-best"
        # Full training: the campaign's options with the default (long) schedule; the model's
        # arguments are the architecture, so train_model builds exactly the candidate's network.
        registered = experiment_spec(
            view["dataset_id"], NAS_MODEL_KEY, {"num_classes": best["num_classes"], **best["arch"]},
            {**spec.training, "epochs": TrainingConfig().epochs},
            name=f"NAS best of {view['campaign_id']}", campaign_id=view["campaign_id"],
            dataset=ready_dataset(database, view["dataset_id"]))
        try:
            create_experiment(database, experiment_id, **registered)
        except RecordConflict:
            pass  # registered by an earlier attempt of this callback
        result["experiment_id"] = experiment_id
    return result, campaign_event("nas.completed", {
        "search_id": view["campaign_id"], "n_candidates": len(done), "best_candidate": best["arch_hash"],
        "metric": "val_accuracy", "best_value": best["val_accuracy"]}, view["campaign_id"])


NAS = Flavor("nas", "run_nas_candidate", "finalize_nas_campaign", _nas_study, _nas_ask, _nas_conclude,
             lambda view: campaign_event("nas.failed", {"search_id": view["campaign_id"], "error": view["error"] or ""},
                                         view["campaign_id"]),
             parse_nas_campaign)


@job_actor(schema=RunNasCampaign)
def run_nas_campaign(payload: RunNasCampaign, job: JobContext) -> dict:
    """Check the NAS campaign, record it, create its study and send its first wave (or resume it)."""
    return start_campaign(payload, job, NAS)


@job_actor(schema=CampaignRef)
def finalize_nas_campaign(payload: CampaignRef, job: JobContext) -> dict:
    """A wave's callback: record it; send the next wave or end the campaign with its Pareto front."""
    return summary(finalize_campaign(project_database(), payload.campaign_id, payload.fanout_id or "", NAS))


@job_actor(schema=CampaignRef)
def stop_nas_campaign(payload: CampaignRef, job: JobContext) -> dict:
    """End a NAS campaign ``cancelled`` with what it found."""
    return summary(stop_campaign(project_database(), payload.campaign_id, NAS))


@job_actor(schema=TrialPayload)
def run_nas_candidate(payload: TrialPayload, job: JobContext) -> dict | None:
    """Build, measure and briefly train one candidate; tell the study its validation accuracy."""
    run = begin_trial(payload, job, NAS)
    if run is None:
        return None
    from pipeline.nas.train import train_candidate

    arch = arch_from_params(payload.params)
    key, database = arch_hash(arch), run.database
    try:
        candidate = start_candidate(database, payload.campaign_id, key, job.message_id)
        if candidate["status"] == "complete":  # trained by an earlier run lost before it told the study
            metrics = candidate["metrics"]
            return finish_trial(run, "complete", value=metrics["val_accuracy"], arch_hash=key, metrics=metrics)
        finish_trial(run, "running", tell=False, arch_hash=key)
        data = load_dataset(database, run.view["dataset_id"])
        result = train_candidate(arch, parse_nas_campaign(run.view["spec"]).training, data,
                                 on_progress=job.progress, should_stop=job.should_stop)
    except StopRequested:
        state, why = ("cancelled", "cancelled") if job.cancel_seen else ("failed", "JobTimedOut: past its time limit")
        update_candidate(database, payload.campaign_id, key, status=state, error=why)
        finish_trial(run, state, error=why, arch_hash=key)
        raise
    except (InvalidInput, RecordNotFound, StoreError) as exc:
        # The candidate's own failure: record it and return normally, so the wave's callback fires.
        reason = mask_secrets(f"{type(exc).__name__}: {exc}")[:1000]
        update_candidate(database, payload.campaign_id, key, status="failed", error=reason)
        finish_trial(run, "failed", error=reason, arch_hash=key)
        job.fail(exc)
        return None
    metrics = {**result.metrics(), "num_classes": len(data.class_keys)}
    update_candidate(database, payload.campaign_id, key, status="complete", metrics=metrics)
    return finish_trial(run, "complete", value=result.val_accuracy, arch_hash=key, metrics=metrics)
