"""HPO campaigns in MLflow: a parent run with one nested run per trial, from real workers."""

from __future__ import annotations

import pytest

from actors.hpo import run_hpo_campaign
from actors.store.campaigns import get_campaign
from actors.store.mlflow_runs import find_mlflow_run
from tests.conftest import wait_until
from tests.mlflow_server import worker_env
from tests.training.conftest import Lane

pytestmark = pytest.mark.slow

SPEC = {"model_key": "cnn1d", "model_args": {"width": 8, "depth": 2},
        "training": {"epochs": 1, "batch_size": 8, "scheduler": "none", "seed": 0},
        "method": "random", "n_trials": 2, "parallelism": 2, "metric": "val_accuracy", "seed": 0,
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}}


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


def test_a_two_trial_campaign_is_a_parent_run_with_two_nested_runs(
        lane, campaign_workers, mlflow_client, tiny_dataset, database):
    # When a two-trial HPO campaign runs on MLflow-logging workers
    message = lane.send(run_hpo_campaign, campaign_id="hpo-mlflow", dataset_id=tiny_dataset["dataset_id"],
                        name="mlflow hpo", spec=SPEC)
    launched = lane.wait(message.message_id, timeout=240)
    assert launched.state == "succeeded", (launched.error_type, launched.error_message)
    view = wait_until(lambda: (v := get_campaign(database, "hpo-mlflow"))["status"] != "running" and v,
                      timeout=240, what="the campaign to end")
    assert view["status"] == "completed", (view["error"], campaign_workers.log("gpu_training")[-2000:])

    # Then MLflow holds a finished parent run and one finished nested run per trial
    parent_id = wait_until(lambda: find_mlflow_run(database, "campaign", "hpo-mlflow"), timeout=30, what="the parent run")
    parent = wait_until(lambda: (r := mlflow_client.get_run(parent_id)).info.status == "FINISHED" and r, timeout=60,
                        what="the parent run to finish")
    assert parent.data.params["n_trials"] == "2" and parent.data.params["metric"] == "val_accuracy"
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(view["best_value"])
    children = wait_until(lambda: len(runs := mlflow_client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")) == 2
        and all(r.info.status == "FINISHED" for r in runs) and runs, timeout=60, what="two finished nested runs")
    for child in children:
        number = child.data.tags["pfd.trial_number"]
        trial = view["trials"][number]
        assert child.data.tags["pfd.trial_state"] == "complete"
        assert float(child.data.params["lr"]) == pytest.approx(trial["params"]["lr"])
        assert child.data.metrics["val_accuracy"] == pytest.approx(trial["value"])
