"""NAS campaigns through the real Procfile workers: candidates, the registered winner trained, stop, crash, failure."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from actors.campaigns import campaign_status
from actors.maintenance import reap_stale_jobs
from actors.nas import run_nas_campaign, stop_nas_campaign
from actors.platform.errors import RecordNotFound
from actors.platform.jobs import get_job, wait_for_job
from actors.store.campaigns import list_candidates
from actors.store.experiments import find_experiment, get_experiment
from actors.store.models import Job
from actors.training import train_model
from pipeline.artifacts import file_sha256
from tests.hpo.conftest import campaign_study, nas_spec, new_id, wait_for_campaign
from tests.records import artifact, make_dataset
from tests.waiting import wait_until

# Three candidates, one at a time, from six architectures (so a draw often repeats a finished one).
# An epoch of these tiny networks takes ~25 ms: 200 of them keep a candidate training for seconds,
# long enough to stop or kill it mid-run.
INTERRUPTIBLE = nas_spec(method="random", n_candidates=3, parallelism=1,
                         space={"min_layers": 1, "max_layers": 1, "ops": ["conv3", "sepconv5"], "widths": [4, 8, 16]},
                         training={"epochs": 200, "batch_size": 4, "scheduler": "none", "seed": 0})


@pytest.fixture(scope="module")
def finished_nas(workers, database, hpo_dataset):  # type: ignore[no-untyped-def]
    """A 3-candidate TPE campaign in one wave, run to the end by the workers."""
    campaign_id = new_id("nas-small")
    run_nas_campaign.send(campaign_id=campaign_id, dataset_id=hpo_dataset["dataset_id"], spec=nas_spec())
    view = wait_for_campaign(database, campaign_id, ("completed", "failed"), timeout=150)
    assert view["status"] == "completed", (view, workers.log("gpu_training")[-3000:])
    return view


def test_a_nas_campaign_trains_real_candidates_and_keeps_a_pareto_front(finished_nas, database):
    from pipeline.models import count_parameters
    from pipeline.nas.model import build_candidate

    view, campaign_id = finished_nas, finished_nas["campaign_id"]
    assert view["counts"]["complete"] == 3
    candidates = [c for c in list_candidates(database, campaign_id) if c["status"] == "complete"]
    assert len({c["arch_hash"] for c in candidates}) == 3
    for candidate in candidates:
        assert candidate["metrics"]["parameter_count"] == count_parameters(build_candidate(candidate["arch"]))
        assert candidate["metrics"]["flops"] > 0 and candidate["metrics"]["latency_ms"] > 0
    best = view["best"]
    assert best["value"] == max(c["metrics"]["val_accuracy"] for c in candidates)
    assert best["pareto"] and best["arch_hash"] in {c["arch_hash"] for c in candidates}
    registered = find_experiment(database, best["experiment_id"])
    assert (registered["model_key"], registered["campaign_id"]) == ("nas_net", campaign_id)
    assert view["counts"].get("duplicate", 0) == sum(1 for e in view["trials"].values() if e["state"] == "duplicate")


def test_train_model_trains_the_registered_best_candidate_as_the_same_network(finished_nas, database):
    from pipeline.models import count_parameters
    from pipeline.training.checkpoint import load_checkpoint

    best = finished_nas["best"]
    recorded = best["metrics"]
    # Given the experiment the finalize callback registered: model nas_net, the architecture as its arguments,
    registered = find_experiment(database, best["experiment_id"])
    assert registered["status"] == "pending"
    assert registered["model_args"] == {"num_classes": recorded["num_classes"], "in_channels": 1, **best["arch"]}
    # when train_model trains it on the campaign's dataset,
    job = wait_for_job(train_model.send(experiment_id=best["experiment_id"]).message_id, timeout_s=240)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    # then it trained exactly the candidate's network, and its checkpoint loads back as that network.
    trained = get_experiment(database, best["experiment_id"])
    assert trained["status"] == "completed" and trained["parameter_count"] == recorded["parameter_count"]
    assert trained["epochs_run"] > 1 and file_sha256(Path(artifact(trained["model_path"]))) == trained["model_sha256"]
    model, meta = load_checkpoint(artifact(trained["model_path"]))
    assert meta["model_key"] == "nas_net" and model.arch == best["arch"]
    assert count_parameters(model) == recorded["parameter_count"]


def _trained_jobs(database, campaign_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Each trained architecture of a campaign and the job that trained it."""
    return {c["arch_hash"]: c["job_id"] for c in list_candidates(database, campaign_id) if c["status"] == "complete"}


def _assert_resumed_without_training_twice(database, pg_url: str, view: dict, before: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """The campaign completed its plan; every architecture counts once; those trained before kept their one run."""
    assert view["status"] == "completed" and view["trials_done"] == view["n_trials"] == view["counts"]["complete"]
    complete = [e for e in view["trials"].values() if e["state"] == "complete"]
    assert len({e["arch_hash"] for e in complete}) == len(complete)
    # This seed's draws repeat a trained architecture after the resume: found by its hash, never sent.
    repeats = [e for e in view["trials"].values() if e["state"] == "duplicate"]
    assert repeats and all("message_id" not in e and e["arch_hash"] in {c["arch_hash"] for c in complete} for e in repeats)
    after = _trained_jobs(database, view["campaign_id"])
    assert len(after) == view["n_trials"] and len(set(after.values())) == len(after)
    assert {key: after[key] for key in before} == before
    study = campaign_study(pg_url, view["campaign_id"])
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == view["n_trials"]


def _running_candidate(database, campaign_id: str) -> dict | None:  # type: ignore[no-untyped-def]
    """A trial whose candidate is training, recorded as running, after a first candidate finished."""
    try:
        view = campaign_status(campaign_id)
    except RecordNotFound:
        return None
    running = [e for e in view["trials"].values() if e["state"] == "running"]
    if view["trials_done"] < 1 or not running:
        return None
    with database.session() as session:
        row = session.get(Job, running[0]["message_id"])
        return running[0] if row is not None and row.state == "running" else None


def test_stop_mid_candidate_then_resume_trains_no_finished_candidate_twice(workers, database, hpo_dataset, pg_url):
    campaign_id = new_id("nas-stop")
    run_nas_campaign.send(campaign_id=campaign_id, dataset_id=hpo_dataset["dataset_id"], spec=INTERRUPTIBLE)
    caught = wait_until(lambda: _running_candidate(database, campaign_id), timeout=120, interval=0.05,
                        what="a candidate training after a first one finished")
    assert wait_for_job(stop_nas_campaign.send(campaign_id=campaign_id).message_id, timeout_s=30).state == "succeeded"
    stopped = wait_for_campaign(database, campaign_id, ("cancelled",), timeout=60)
    assert 1 <= stopped["trials_done"] < 3 and stopped["error"] == "stopped by request"
    number = next(n for n, e in stopped["trials"].items() if e.get("message_id") == caught["message_id"])
    assert stopped["trials"][number]["state"] == "cancelled"  # stopped at its next epoch
    before = _trained_jobs(database, campaign_id)

    resume = run_nas_campaign.send(campaign_id=campaign_id, resume=True)
    # The launcher alone: the rest of the campaign is what the wait below is for.
    assert wait_for_job(resume.message_id, timeout_s=30, tree=False).state == "succeeded"
    resumed = wait_for_campaign(database, campaign_id, ("completed",), timeout=150)
    _assert_resumed_without_training_twice(database, pg_url, resumed, before)
    for number, entry in stopped["trials"].items():  # finished trials kept their one run
        if entry["state"] == "complete":
            assert resumed["trials"][number]["message_id"] == entry["message_id"]
    # The candidate the stop caught was asked again and trained by a new job, not dropped.
    assert _trained_jobs(database, campaign_id).get(caught["arch_hash"]) not in (None, caught["message_id"])


def _reaped(message_id: str) -> bool:
    result = wait_for_job(reap_stale_jobs.send(grace_s=1).message_id, timeout_s=30).result
    return message_id in {r["message_id"] for r in result["reaped"]}


def test_a_candidate_whose_worker_crashed_is_reaped_and_resume_trains_only_what_was_left(
        workers, database, hpo_dataset, pg_url):
    campaign_id = new_id("nas-crash")
    run_nas_campaign.send(campaign_id=campaign_id, dataset_id=hpo_dataset["dataset_id"], spec=INTERRUPTIBLE)
    victim = wait_until(lambda: _running_candidate(database, campaign_id), timeout=120, interval=0.05,
                        what="a candidate training after a first one finished")
    try:
        # Given the gpu_training worker killed mid-candidate and no worker to redeliver its message,
        workers.signal("gpu_training", signal.SIGKILL)
        workers.stop("gpu_training")
        before = _trained_jobs(database, campaign_id)
        assert victim["arch_hash"] not in before
        # when the reaper fails the lost job (once its worker's heartbeat is gone) and the campaign is resumed,
        wait_until(lambda: _reaped(victim["message_id"]), timeout=60, interval=1.0, what="the reaper to fail the job")
        assert (get_job(victim["message_id"]).state, get_job(victim["message_id"]).error_type) == ("failed", "JobReaped")
        resume = run_nas_campaign.send(campaign_id=campaign_id, resume=True)
        # The launcher alone: the candidates it sends wait for a gpu_training worker, started below.
        assert wait_for_job(resume.message_id, timeout_s=30, tree=False).state == "succeeded"
    finally:
        if "gpu_training" not in workers.processes:
            workers.start("gpu_training")
    # then the campaign completes: the interrupted architecture trains again under a new job, no finished
    # one does, and the killed trial stays settled (its message, should it come back, finds it final).
    resumed = wait_for_campaign(database, campaign_id, ("completed",), timeout=180)
    _assert_resumed_without_training_twice(database, pg_url, resumed, before)
    number = next(n for n, e in resumed["trials"].items() if e.get("message_id") == victim["message_id"])
    assert resumed["trials"][number]["state"] == "cancelled"
    assert _trained_jobs(database, campaign_id).get(victim["arch_hash"]) not in (None, victim["message_id"])


def test_a_campaign_in_which_no_candidate_completes_fails_and_announces_nas_failed(workers, database):
    from actors.store.notifications import list_inbox

    dataset = make_dataset(database, new_id("ds-nas-gone"), records_per_class=3)
    Path(artifact(dataset["path"])).unlink()  # every candidate fails on its own input: the file is gone
    campaign_id = new_id("nas-fail")
    run_nas_campaign.send(campaign_id=campaign_id, dataset_id=dataset["dataset_id"],
                          spec=nas_spec(n_candidates=2, parallelism=2))
    view = wait_for_campaign(database, campaign_id, ("completed", "failed"), timeout=120)
    assert view["status"] == "failed" and view["counts"] == {"failed": 2} and view["best"] is None
    assert all("DatasetFileError" in e["error"] for e in view["trials"].values())

    def announced():  # type: ignore[no-untyped-def]
        return [i for i in list_inbox(database, "default", limit=200)
                if i["event_type"] == "nas.failed" and i["payload"]["search_id"] == campaign_id]

    [item] = wait_until(announced, timeout=30, what="the nas.failed inbox row")
    assert item["payload"]["error"] == view["error"] and "no trial completed" in item["payload"]["error"]
