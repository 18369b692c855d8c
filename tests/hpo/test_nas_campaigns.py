"""NAS campaigns through the real Procfile workers: candidates, the registered winner trained, failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.jobs import wait_for_job
from actors.nas import run_nas_campaign
from actors.store.campaigns import list_candidates
from actors.store.experiments import find_experiment, get_experiment
from actors.training import train_model
from pipeline.artifacts import file_sha256
from tests.conftest import wait_until
from tests.hpo.conftest import (
    make_dataset,
    nas_spec,
    new_id,
    wait_for_campaign,
)


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
    assert registered["model_args"] == {"num_classes": recorded["num_classes"], **best["arch"]}
    # when train_model trains it on the campaign's dataset,
    job = wait_for_job(train_model.send(experiment_id=best["experiment_id"]).message_id, timeout_s=240)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    # then it trained exactly the candidate's network, and its checkpoint loads back as that network.
    trained = get_experiment(database, best["experiment_id"])
    assert trained["status"] == "completed" and trained["parameter_count"] == recorded["parameter_count"]
    assert trained["epochs_run"] > 1 and file_sha256(Path(trained["model_path"])) == trained["model_sha256"]
    model, meta = load_checkpoint(trained["model_path"])
    assert meta["model_key"] == "nas_net" and model.arch == best["arch"]
    assert count_parameters(model) == recorded["parameter_count"]


def test_a_campaign_in_which_no_candidate_completes_fails_and_announces_nas_failed(workers, database):
    from actors.store.notifications import list_inbox

    dataset = make_dataset(database, new_id("ds-nas-gone"))
    Path(dataset["path"]).unlink()  # every candidate fails on its own input: the file is gone
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
