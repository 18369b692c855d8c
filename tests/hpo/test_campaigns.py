"""HPO campaigns through the real Procfile workers: waves, callbacks, stop, resume, failures (NAS: test_nas_campaigns)."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import select

from actors.campaigns import campaign_status
from actors.hpo import run_hpo_campaign, stop_hpo_campaign
from actors.platform.errors import RecordNotFound
from actors.platform.fanout import get_fanout
from actors.platform.jobs import get_job, get_tree, wait_for_job
from actors.store.campaigns import get_campaign
from actors.store.experiments import Experiment, experiment_history, find_experiment
from actors.store.models import Job
from config.settings import get_settings
from tests.hpo.conftest import campaign_study, hpo_spec, new_id, trials_done, wait_for_campaign
from tests.records import artifact
from tests.waiting import wait_until


def _experiments(database, campaign_id: str) -> list[Experiment]:  # type: ignore[no-untyped-def]
    with database.session() as session:
        return list(session.scalars(select(Experiment).where(Experiment.campaign_id == campaign_id)).all())


def _finalize_jobs(database, campaign_id: str, actor: str = "finalize_hpo_campaign") -> list[Job]:  # type: ignore[no-untyped-def]
    with database.session() as session:
        rows = session.scalars(select(Job).where(Job.actor == actor, Job.state == "succeeded")).all()
        return [row for row in rows if (row.result or {}).get("campaign_id") == campaign_id]


@pytest.fixture(scope="module")
def finished_campaign(workers, database, hpo_dataset):  # type: ignore[no-untyped-def]
    """A 4-trial campaign in waves of 2, run to the end by the workers."""
    campaign_id = new_id("hpo-small")
    message = run_hpo_campaign.send(campaign_id=campaign_id, dataset_id=hpo_dataset["dataset_id"], spec=hpo_spec())
    assert wait_for_job(message.message_id, timeout_s=60).state == "succeeded"
    view = wait_for_campaign(database, campaign_id, ("completed", "failed"), timeout=150)
    assert view["status"] == "completed", (view, workers.log("gpu_training")[-3000:])
    return view


def test_a_campaign_fans_out_its_trials_in_waves_and_finalizes_each_wave_once(finished_campaign, database):
    view = finished_campaign
    assert view["n_trials"] == 4 and view["trials_done"] == 4 and view["progress"] == 1.0
    assert view["counts"] == {"complete": 4}
    assert len(view["waves"]) == 2 and all(len(w["trials"]) == 2 and w["finalized"] for w in view["waves"])
    for fanout_id in view["fanout_ids"]:
        fanout = get_fanout(fanout_id)
        assert (fanout.total, fanout.done, fanout.failed, fanout.state) == (2, 2, 0, "completed")
    for entry in view["trials"].values():
        job = get_job(entry["message_id"])
        assert (job.queue, job.state) == ("gpu_training", "succeeded") and job.fanout_id == entry["wave"]
    # The recorder writes finished jobs to the database: one callback per wave, never more.
    wait_until(lambda: len(_finalize_jobs(database, view["campaign_id"])) >= 2, timeout=30, what="finalize rows")
    assert len(_finalize_jobs(database, view["campaign_id"])) == 2


def test_the_campaign_is_one_tree_of_its_waves_trials_and_finalizes(finished_campaign):
    # The fixture's wait on the launcher returned only once this whole tree was final.
    tree = get_tree(finished_campaign["campaign_id"])
    work = [node.actor for node in tree.nodes if node.queue != "notifications"]
    assert tree.root.actor == "run_hpo_campaign" and tree.final and tree.state == "succeeded"
    assert work.count("run_hpo_trial") == 4 and work.count("finalize_hpo_campaign") == 2


def test_the_best_trial_is_the_best_recorded_experiment_and_only_it_touches_the_test_split(finished_campaign, database, pg_url):
    view = finished_campaign
    experiments = _experiments(database, view["campaign_id"])
    assert len(experiments) == 4 and all(e.status == "completed" for e in experiments)
    best = max(experiments, key=lambda e: (e.best_val_accuracy, -int(e.id.rsplit("-t", 1)[1])))
    assert view["best"]["experiment_id"] == best.id and view["best_value"] == best.best_val_accuracy
    assert {e.id: e.metrics is not None for e in experiments} == {e.id: e.id == best.id for e in experiments}
    assert view["best"]["test"]["window_accuracy"] == best.metrics["window_accuracy"]
    # The sampled values went where they belong: lr to training, kernel_size to the model.
    params = view["best"]["params"]
    assert best.training_config["lr"] == pytest.approx(params["lr"]) and best.model_args["kernel_size"] == params["kernel_size"]
    # The study lives in the shared storage: another process reads the same trials and best.
    study = campaign_study(pg_url, view["campaign_id"])
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert study.best_value == pytest.approx(view["best_value"])


def test_progress_and_the_best_so_far_are_readable_by_id(finished_campaign):
    view = campaign_status(finished_campaign["campaign_id"])
    assert (view["status"], view["progress"], view["best_value"]) == ("completed", 1.0, finished_campaign["best_value"])
    with pytest.raises(RecordNotFound):
        campaign_status("no-such-campaign")


def test_completion_is_announced(finished_campaign, database):
    from actors.store.notifications import list_inbox

    def announced():  # type: ignore[no-untyped-def]
        return [i for i in list_inbox(database, "default", limit=200)
                if i["event_type"] == "hpo.completed" and i["payload"]["study_id"] == finished_campaign["campaign_id"]]

    [item] = wait_until(announced, timeout=30, what="the hpo.completed inbox row")
    assert item["payload"]["best_value"] == pytest.approx(finished_campaign["best_value"])


def test_stop_mid_campaign_then_resume_runs_no_finished_trial_twice(workers, database, hpo_dataset, pg_url):
    campaign_id = new_id("hpo-stop")
    spec = hpo_spec(n_trials=4, parallelism=1, training={"epochs": 3, "batch_size": 4, "scheduler": "none", "seed": 0})
    run_hpo_campaign.send(campaign_id=campaign_id, dataset_id=hpo_dataset["dataset_id"], spec=spec)
    wait_until(lambda: trials_done(campaign_id) >= 1, timeout=120, interval=0.05, what="a first finished trial")
    stop = stop_hpo_campaign.send(campaign_id=campaign_id)
    assert wait_for_job(stop.message_id, timeout_s=30).state == "succeeded"
    stopped = wait_for_campaign(database, campaign_id, ("cancelled",), timeout=60)
    assert 1 <= stopped["trials_done"] < 4 and stopped["error"] == "stopped by request"
    assert set(stopped["counts"]) <= {"complete", "cancelled", "skipped"}
    finished_before = {n: e["message_id"] for n, e in stopped["trials"].items() if e["state"] == "complete"}

    resume = run_hpo_campaign.send(campaign_id=campaign_id, resume=True)
    resumed_job = wait_for_job(resume.message_id, timeout_s=30, tree=False)  # the campaign is awaited below
    assert resumed_job.state == "succeeded", (resumed_job.error_type, resumed_job.error_message)
    resumed = wait_for_campaign(database, campaign_id, ("completed",), timeout=150)
    assert resumed["trials_done"] == 4 and resumed["counts"]["complete"] == 4
    for number, message_id in finished_before.items():  # finished trials kept their one run
        assert resumed["trials"][number]["message_id"] == message_id
    completed = [e for e in _experiments(database, campaign_id) if e.status == "completed"]
    assert len(completed) == 4 and len({e.job_id for e in completed}) == 4
    study = campaign_study(pg_url, campaign_id)
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 4
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.trials)
    # An interrupted trial's values were queued again rather than dropped.
    interrupted = [e["params"] for e in stopped["trials"].values() if e["state"] in ("cancelled", "skipped")]
    ran_after = [e["params"] for n, e in resumed["trials"].items() if n not in stopped["trials"]]
    assert all(p in ran_after for p in interrupted)


def test_a_resume_sent_while_a_trial_is_still_stopping_is_carried_out_when_it_stops(workers, database, hpo_dataset):
    campaign_id = new_id("hpo-wait")
    training = {"epochs": 8, "early_stopping_patience": 100, "batch_size": 4, "scheduler": "none", "seed": 0}
    run_hpo_campaign.send(campaign_id=campaign_id, dataset_id=hpo_dataset["dataset_id"],
                          spec=hpo_spec(n_trials=2, parallelism=1, training=training))
    wait_until(lambda: experiment_history(database, f"{campaign_id}-t0"), timeout=120, interval=0.05,
               what="trial 0's first epoch")
    # Frozen mid-training, trial 0 cannot reach the epoch at which it would notice the stop.
    workers.signal("gpu_training", signal.SIGSTOP)
    try:
        stop = stop_hpo_campaign.send(campaign_id=campaign_id)
        assert wait_for_job(stop.message_id, timeout_s=30).state == "succeeded"
        resume = run_hpo_campaign.send(campaign_id=campaign_id, resume=True)
        job = wait_for_job(resume.message_id, timeout_s=30, tree=False)
        waiting = get_campaign(database, campaign_id)
    finally:
        workers.signal("gpu_training", signal.SIGCONT)
    # The resume is accepted and recorded, not retried against the clock; nothing ran yet.
    assert job.state == "succeeded", (job.error_type, job.error_message)
    assert (job.result["status"], job.result["resume_job_id"]) == ("cancelled", resume.message_id)
    assert (waiting["status"], waiting["resume_job_id"], waiting["trials"]["0"]["state"]) == (
        "cancelled", resume.message_id, "running")
    # Trial 0 stops at its next epoch and, being the last to stop, carries the resume out.
    resumed = wait_for_campaign(database, campaign_id, ("completed",), timeout=150)
    assert resumed["trials"]["0"]["state"] == "cancelled" and resumed["trials"]["0"]["requeued"]
    assert resumed["counts"]["complete"] == 2 and resumed["job_id"] == resume.message_id
    assert resumed["resume_job_id"] is None
    rerun = [e for n, e in resumed["trials"].items() if n != "0" and e["params"] == resumed["trials"]["0"]["params"]]
    assert len(rerun) == 1 and rerun[0]["state"] == "complete"


def test_a_trial_that_fails_does_not_lose_the_others(workers, database, hpo_dataset):
    campaign_id = new_id("hpo-fail")
    # A corrupt checkpoint waiting in trial 1's directory: that trial fails on its own input.
    directory = get_settings().artifact_root / "experiments" / f"{campaign_id}-t1"
    directory.mkdir(parents=True)
    (directory / "last.pt").write_bytes(b"not a checkpoint")
    run_hpo_campaign.send(campaign_id=campaign_id, dataset_id=hpo_dataset["dataset_id"],
                          spec=hpo_spec(n_trials=3, parallelism=3, method="random"))
    view = wait_for_campaign(database, campaign_id, ("completed", "failed"), timeout=150)
    assert view["status"] == "completed" and view["counts"] == {"complete": 2, "failed": 1}
    failed = view["trials"]["1"]
    assert "CheckpointError" in failed["error"] and view["best"]["trial"] != 1
    job = get_job(failed["message_id"])
    assert (job.state, job.error_type, job.attempts) == ("failed", "CheckpointError", 1)
    assert find_experiment(database, f"{campaign_id}-t1")["status"] == "failed"
    fanout = get_fanout(view["fanout_ids"][0])
    assert (fanout.done, fanout.failed, fanout.state) == (2, 1, "completed")


def test_a_space_the_model_refuses_is_refused_before_any_trial_is_sent(workers, database, hpo_dataset):
    campaign_id = new_id("hpo-bad")
    # Only a built model refuses this bound (a value out of its declared range is refused on send).
    spec = hpo_spec(space={"dropout": {"type": "float", "low": 0.1, "high": 1.5}})
    message = run_hpo_campaign.send(campaign_id=campaign_id, dataset_id=hpo_dataset["dataset_id"], spec=spec)
    job = wait_for_job(message.message_id, timeout_s=60)
    assert (job.state, job.error_type, job.attempts) == ("failed", "InvalidInput", 1)
    assert "'dropout' = 1.5 is refused" in job.error_message
    with pytest.raises(RecordNotFound):
        campaign_status(campaign_id)  # no record, so no study and no wave


@pytest.mark.parametrize(("model_key", "metric", "space"), [
    ("rf", "val_f1_macro", None),  # the default space
    ("svm", "val_loss", {"C": {"type": "float", "low": 0.5, "high": 50.0, "log": True},
                         "calibration_folds": {"type": "categorical", "choices": [2, 3]}}),
])
def test_a_classical_campaign_fits_cheap_trials_on_the_features_and_tests_only_its_best(
    workers, database, hpo_dataset, model_key, metric, space,
):
    import numpy as np

    from pipeline.hpo.trial import evaluate_on_test, validation_only
    from pipeline.training import load_training_data

    campaign_id = new_id(f"hpo-{model_key}")
    spec = {"model_key": model_key, "metric": metric, "n_trials": 3, "parallelism": 3, "method": "random", "seed": 1,
            **({"space": space} if space else {})}
    message = run_hpo_campaign.send(campaign_id=campaign_id, dataset_id=hpo_dataset["dataset_id"], spec=spec)
    assert wait_for_job(message.message_id, timeout_s=60).state == "succeeded"
    view = wait_for_campaign(database, campaign_id, ("completed", "failed"), timeout=150)
    assert view["status"] == "completed", (view, workers.log("gpu_training")[-3000:])
    # Fanned out the same way: one wave of 3 trial jobs on gpu_training, each its own classical experiment.
    assert view["counts"] == {"complete": 3} and len(view["fanout_ids"]) == 1
    assert all(get_job(e["message_id"]).queue == "gpu_training" for e in view["trials"].values())
    experiments = _experiments(database, campaign_id)
    assert {e.model_key for e in experiments} == {model_key}
    assert all(e.status == "completed" and e.model_path.endswith("model.skops") for e in experiments)
    assert {e.id: e.metrics is not None for e in experiments} == {e.id: e.id == view["best"]["experiment_id"]
                                                                  for e in experiments}
    # The study optimised the chosen metric on the validation split: the best trial's value is that metric of its model.
    best = next(e for e in experiments if e.id == view["best"]["experiment_id"])
    data = load_training_data(hpo_dataset["path"])
    scored = evaluate_on_test(artifact(best.model_path), validation_only(data), model_key=model_key, sha256=best.model_sha256)
    expected = scored["f1_macro"] if metric == "val_f1_macro" else scored["loss"]
    assert view["best_value"] == pytest.approx(expected, rel=1e-6)
    values = [e["value"] for e in view["trials"].values()]
    assert view["best_value"] == (max(values) if metric == "val_f1_macro" else min(values))
    assert view["best"]["test"]["window_accuracy"] == best.metrics["window_accuracy"]
    assert np.isfinite(view["best"]["test"]["loss"])
