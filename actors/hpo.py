"""HPO campaigns as fan-out: an Optuna study in shared storage, trial groups on ``gpu_training``.

``run_hpo_campaign`` checks a campaign before anything is sent, records it and sends its
first wave of trials; each wave's callback, ``finalize_hpo_campaign``, records it and sends
the next until ``n_trials`` are done, then scores the best trial on the test split once
and sends ``hpo.completed``. A trial (``run_hpo_trial``) is a training job with its own
experiment linked to the campaign. ``stop_hpo_campaign`` ends a campaign ``cancelled``;
``resume=True`` continues its study. The wave machinery is ``actors.campaigns``.
"""

from __future__ import annotations

from pathlib import Path
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
from actors.platform.artifact_files import publish
from actors.platform.base import job_actor
from actors.platform.catalog import options_of_dataclass
from actors.platform.context import JobContext
from actors.platform.errors import RecordConflict, RecordNotFound, StoreError
from actors.record_files import experiment_file
from actors.store.campaigns import set_test_metrics
from actors.store.db import Database
from actors.store.experiments import (
    claim_experiment,
    complete_experiment,
    experiment_history,
    fail_experiment,
    get_experiment,
    record_epoch,
)
from actors.training import (
    experiment_spec,
    load_training_dataset,
    published_progress,
    ready_dataset,
    restore_progress,
    training_option_rows,
)
from config.settings import get_settings, mask_secrets
from pipeline.artifacts import file_sha256
from pipeline.errors import InvalidInput, StopRequested
from pipeline.hpo import (
    DIRECTIONS,
    METHODS,
    METRICS,
    CampaignSpec,
    check_campaign,
    parse_campaign,
)
from pipeline.models import DEEP_KEYS
from pipeline.training.metrics import EpochRecord

__all__ = ["HPO", "RunHpoCampaign", "finalize_hpo_campaign", "run_hpo_campaign", "run_hpo_trial", "stop_hpo_campaign"]


class RunHpoCampaign(CampaignStart):
    """A new HPO campaign (``dataset_id`` + ``spec``), or a resume."""

    # The worker's full check, less the model builds: no torch in a producer.
    parse_spec = staticmethod(lambda raw: check_campaign(parse_campaign(raw), build=False))

    @classmethod
    def documented_options(cls) -> dict[str, list[dict[str, Any]]]:
        """The campaign spec's fields; its ``training`` and ``model_args`` are ``train_model``'s."""
        return {"spec": options_of_dataclass(
            CampaignSpec, {"model_key": DEEP_KEYS, "method": METHODS, "metric": tuple(METRICS), "direction": DIRECTIONS},
            {"space": "parameter name -> {type: float | int | categorical, low, high, log, step, choices, "
                      "target: model | training}",
             "model_args": "the base model arguments (train_model's model_args)",
             "training": "the base training options (train_model's training)"}), "spec.training": training_option_rows()}


def _hpo_study(view: dict[str, Any]) -> Any:
    from pipeline.hpo.study import open_storage, open_study

    spec = parse_campaign(view["spec"])
    return open_study(open_storage(get_settings().database_url), view["study_name"], direction=spec.direction,
                      method=spec.method, space=spec.space, seed=spec.seed, epochs=spec.epochs)


def _hpo_ask(database: Database, view: dict[str, Any], study: Any, count: int) -> list[Any]:
    from pipeline.hpo.study import ask_trials, distributions

    return ask_trials(study, distributions(parse_campaign(view["spec"]).space), count)


def _hpo_conclude(database: Database, view: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score the best trial on the test split (once per best); return it and the event announcing it."""
    from pipeline.hpo.trial import evaluate_on_test

    best = dict(view["best"])
    if best.get("tested_experiment") != best["experiment_id"]:
        experiment = get_experiment(database, best["experiment_id"])
        best["test"] = evaluate_on_test(experiment_file(experiment), load_dataset(database, view["dataset_id"]),
                                        model_key=experiment["model_key"], sha256=experiment["model_sha256"])
        best["tested_experiment"] = best["experiment_id"]
        set_test_metrics(database, best["experiment_id"], best["test"])
    return best, campaign_event("hpo.completed", {
        "study_id": view["campaign_id"], "n_trials": view["trials_done"], "metric": view["metric"],
        "best_value": best["value"], "best_params": best["params"]}, view["campaign_id"])


HPO = Flavor("hpo", "run_hpo_trial", "finalize_hpo_campaign", _hpo_study, _hpo_ask, _hpo_conclude,
             lambda view: campaign_event("hpo.failed", {"study_id": view["campaign_id"], "error": view["error"] or ""},
                                         view["campaign_id"]),
             lambda spec: check_campaign(parse_campaign(spec)))


@job_actor(schema=RunHpoCampaign)
def run_hpo_campaign(payload: RunHpoCampaign, job: JobContext) -> dict:
    """Check the campaign, record it, create its study and send its first wave (or resume it)."""
    return start_campaign(payload, job, HPO)


@job_actor(schema=CampaignRef)
def finalize_hpo_campaign(payload: CampaignRef, job: JobContext) -> dict:
    """A wave's callback: record it and the best so far; send the next wave or end the campaign."""
    return summary(finalize_campaign(project_database(), payload.campaign_id, payload.fanout_id or "", HPO))


@job_actor(schema=CampaignRef)
def stop_hpo_campaign(payload: CampaignRef, job: JobContext) -> dict:
    """End a campaign ``cancelled`` with what it found: running trials stop, queued ones are skipped."""
    return summary(stop_campaign(project_database(), payload.campaign_id, HPO))


@job_actor(schema=TrialPayload)
def run_hpo_trial(payload: TrialPayload, job: JobContext) -> dict | None:
    """Train one trial as an experiment of the campaign; tell the study its validation score."""
    run = begin_trial(payload, job, HPO)
    if run is None:
        return None
    from pipeline.hpo.study import reopen_trial
    from pipeline.hpo.trial import evaluate_on_test, run_classical_trial, run_trial, validation_only

    database, spec, number = run.database, parse_campaign(run.view["spec"]), payload.trial_number
    experiment_id = f"{payload.campaign_id}-t{number}"
    try:
        model_args, training = spec.trial_arguments(payload.params)
        dataset = ready_dataset(database, run.view["dataset_id"])
        # Deep trials read a dataset larger than the budget a group of records at a time; a
        # classical trial's features are cached per split in memory (cached_features).
        budget = get_settings().training_memory_mb
        exp_spec = experiment_spec(run.view["dataset_id"], spec.model_key, model_args, training,
                                   name=f"{run.view['name'] or payload.campaign_id} trial {number}",
                                   campaign_id=payload.campaign_id, dataset=dataset)
        directory = get_settings().artifact_root / "experiments" / experiment_id
        claim = claim_experiment(database, experiment_id, job.message_id, spec=exp_spec, checkpoint_dir=str(directory))
        if claim.done:  # trained by an earlier attempt that was lost before it told the study
            losses = [row["val_loss"] for row in experiment_history(database, experiment_id)]
            if spec.metric == "val_accuracy" or (spec.metric == "val_loss" and losses):
                value = (claim.summary or {})["best_val_accuracy"] if spec.metric == "val_accuracy" else min(losses)
            else:  # macro F1, or a classical fit's loss: score the saved model on validation again
                saved = get_experiment(database, experiment_id)
                scores = evaluate_on_test(experiment_file(saved), validation_only(load_training_dataset(dataset, budget)),
                                          model_key=spec.model_key, sha256=saved["model_sha256"])
                value = scores["f1_macro"] if spec.metric == "val_f1_macro" else scores["loss"]
            return finish_trial(run, "complete", value=value, experiment_id=experiment_id)
        finish_trial(run, "running", tell=False, experiment_id=experiment_id)
        if spec.classical:
            outcome = run_classical_trial(
                spec.metric, spec.model_key, model_args, load_training_dataset(dataset),
                f"{dataset['dataset_id']}:{dataset['checksum']}", directory, on_progress=job.progress,
                should_stop=job.should_stop)
        else:
            restore_progress(directory)
            with published_progress(directory) as publish_epoch:
                def on_epoch(record: EpochRecord) -> None:
                    record_epoch(database, experiment_id, record.to_dict())
                    publish_epoch()

                outcome = run_trial(
                    reopen_trial(run.study, payload.trial_id), spec.metric, spec.model_key, model_args, training,
                    load_training_dataset(dataset, budget), directory, on_progress=job.progress,
                    should_stop=job.should_stop, on_epoch=on_epoch)
    except StopRequested:
        state, why = ("cancelled", "cancelled") if job.cancel_seen else ("failed", "JobTimedOut: past its time limit")
        fail_experiment(database, experiment_id, job.message_id, why, status=state)
        finish_trial(run, state, error=why, experiment_id=experiment_id)
        raise
    except RecordConflict as exc:  # another job is training this trial's experiment: it will tell
        job.fail(exc)
        return None
    except (InvalidInput, RecordNotFound, StoreError) as exc:
        # The trial's own failure: record it and return normally, so the wave's callback fires.
        reason = mask_secrets(f"{type(exc).__name__}: {exc}")[:1000]
        fail_experiment(database, experiment_id, job.message_id, reason)
        finish_trial(run, "failed", error=reason, experiment_id=experiment_id)
        job.fail(exc)
        return None
    if outcome.state == "pruned":
        fail_experiment(database, experiment_id, job.message_id, f"pruned at epoch {outcome.pruned_at_epoch}",
                        status="cancelled")
        return finish_trial(run, "pruned", value=outcome.value, experiment_id=experiment_id)
    result = outcome.result
    assert result is not None  # a completed trial always carries its training result
    model_sha256 = file_sha256(Path(result.model_path))
    complete_experiment(
        database, experiment_id, job.message_id, model_args=result.model_args, training_config=result.config,
        epochs_run=result.epochs_run, best_epoch=result.best_epoch, best_val_accuracy=result.best_val_accuracy,
        metrics=None, model_path=publish(result.model_path, model_sha256), model_sha256=model_sha256,
        parameter_count=result.parameter_count, duration_s=result.duration_s)
    return finish_trial(run, "complete", value=outcome.value, experiment_id=experiment_id)
