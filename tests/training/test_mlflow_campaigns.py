"""HPO and NAS campaigns in MLflow: a parent run with one nested run per trial, from real workers."""

from __future__ import annotations

import pytest

from actors.hpo import run_hpo_campaign
from actors.nas import run_nas_campaign
from actors.store.campaigns import get_campaign
from actors.store.mlflow_runs import find_mlflow_run
from tests.mlflow_server import worker_env
from tests.training.conftest import Lane
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

HPO_SPEC = {"model_key": "cnn1d", "model_args": {"width": 8, "depth": 2},
        "training": {"epochs": 1, "batch_size": 8, "scheduler": "none", "seed": 0},
        "method": "random", "n_trials": 2, "parallelism": 2, "metric": "val_accuracy", "seed": 0,
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}}
NAS_SPEC = {"method": "tpe", "n_candidates": 2, "parallelism": 2, "seed": 3,
            "space": {"min_layers": 1, "max_layers": 1, "ops": ["conv3", "maxpool"], "widths": [4]},
            "training": {"epochs": 1, "batch_size": 8, "scheduler": "none", "seed": 0}}


@pytest.fixture(scope="module")
def campaign_workers(lane: Lane, mlflow_server, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A high_priority and a gpu_training worker on the lane, logging to the test MLflow server."""
    workers = lane.workers(tmp_path_factory.mktemp("mlflow-campaign-logs"))
    workers.extra_env.update(worker_env(mlflow_server))
    try:
        workers.start("high_priority")
        lane.start_gpu_worker(workers, "gpu_training")
        yield workers
    finally:
        workers.stop_all()


@pytest.mark.parametrize("actor, campaign_id, spec", [(run_hpo_campaign, "hpo-mlflow", HPO_SPEC),
                                                      (run_nas_campaign, "nas-mlflow", NAS_SPEC)], ids=["hpo", "nas"])
def test_a_two_trial_campaign_is_a_parent_run_with_two_nested_runs(
        actor, campaign_id, spec, lane, campaign_workers, mlflow_client, tiny_dataset, database):
    # When a two-trial HPO (or two-candidate NAS) campaign runs on MLflow-logging workers
    message = lane.send(actor, campaign_id=campaign_id, dataset_id=tiny_dataset["dataset_id"],
                        name=f"mlflow {campaign_id}", spec=spec)
    launched = lane.wait(message.message_id, timeout=240)
    assert launched.state == "succeeded", (launched.error_type, launched.error_message)
    view = wait_until(lambda: (v := get_campaign(database, campaign_id))["status"] != "running" and v,
                      timeout=240, what="the campaign to end")
    assert view["status"] == "completed", (view["error"], campaign_workers.log("gpu_training")[-2000:])

    # Then MLflow holds a finished parent run and one finished nested run per trial
    parent_id = wait_until(lambda: find_mlflow_run(database, "campaign", campaign_id), timeout=30, what="the parent run")
    parent = wait_until(lambda: (r := mlflow_client.get_run(parent_id)).info.status == "FINISHED" and r, timeout=60,
                        what="the parent run to finish")
    metric = view["metric"]
    assert parent.data.params["n_trials"] == "2" and parent.data.params["metric"] == metric
    assert parent.data.params["kind"] == view["kind"] and parent.data.tags["pfd.status"] == "completed"
    if view["best_value"] is not None:
        assert parent.data.metrics[f"best_{metric}"] == pytest.approx(view["best_value"])
    children = wait_until(lambda: len(runs := mlflow_client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")) == 2
        and all(r.info.status == "FINISHED" for r in runs) and runs, timeout=60, what="two finished nested runs")
    for child in children:
        number = child.data.tags["pfd.trial_number"]
        trial = view["trials"][number]
        assert child.data.tags["pfd.trial_state"] == "complete"
        assert child.data.params
        assert (child.data.tags["pfd.experiment_id"], child.data.tags["pfd.arch_hash"]) == (
            trial.get("experiment_id", ""), trial.get("arch_hash", ""))
        if "lr" in trial["params"]:
            assert float(child.data.params["lr"]) == pytest.approx(trial["params"]["lr"])
        assert child.data.metrics[metric] == pytest.approx(trial["value"])
