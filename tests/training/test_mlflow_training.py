"""``train_model`` as an MLflow run, read back with the MLflow client from a real tracking server."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.store.experiments import get_experiment
from actors.store.mlflow_runs import find_mlflow_run
from actors.training import train_model
from tests.mlflow_server import pfd_mlflow, worker_env
from tests.training.conftest import TINY_CNN, Lane
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

EPOCH_METRICS = ("train_loss", "val_loss", "train_acc", "val_acc", "lr", "epoch_time_s")
EPOCH_DELAY_S = 1.5


def _training(epochs: int) -> dict:
    return {**TINY_CNN, "training": {**TINY_CNN["training"], "epochs": epochs}}


@pytest.fixture(scope="module")
def mlflow_workers(lane: Lane, mlflow_server, tmp_path_factory):  # type: ignore[no-untyped-def]
    """gpu_training workers on the lane that log to the test MLflow server (started per test)."""
    workers = lane.workers(tmp_path_factory.mktemp("mlflow-worker-logs"))
    workers.extra_env.update(worker_env(mlflow_server))
    try:
        yield workers
    finally:
        workers.stop_all()


def _finished_run(client, database, experiment_id: str, timeout: float = 60):  # type: ignore[no-untyped-def]
    """The experiment's kept run, once MLflow says it is FINISHED."""
    def finished():  # type: ignore[no-untyped-def]
        run_id = find_mlflow_run(database, "experiment", experiment_id)
        run = client.get_run(run_id) if run_id else None
        return run if run and run.info.status == "FINISHED" else None
    return wait_until(finished, timeout=timeout, interval=0.25, what=f"the MLflow run of {experiment_id} to finish")


def _steps(client, run_id: str, key: str) -> list[int]:  # type: ignore[no-untyped-def]
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_training_on_a_worker_is_an_mlflow_run_with_params_epoch_metrics_and_artifacts(
        lane, mlflow_workers, mlflow_server, mlflow_client, tiny_dataset, database):
    # Given a worker that logs to MLflow
    lane.start_gpu_worker(mlflow_workers, "gpu_training")
    # When it trains a tiny CNN for three epochs
    message = lane.send(train_model, experiment_id="exp-mlflow", dataset_id=tiny_dataset["dataset_id"],
                        name="mlflow cnn", **_training(3))
    job = lane.wait(message.message_id, timeout=120)
    assert job.state == "succeeded", (job.error_type, job.error_message, mlflow_workers.log("gpu_training")[-3000:])

    # Then one finished run holds its params, every epoch's metrics, test metrics, tags and artifacts
    run = _finished_run(mlflow_client, database, "exp-mlflow")
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["model_key"] == "cnn1d" and params["model.width"] == "8" and params["training.epochs"] == "3"
    assert params["dataset_id"] == tiny_dataset["dataset_id"] and "dataset_config_hash" in params
    assert run.info.run_name == "mlflow cnn"
    for key in EPOCH_METRICS:
        assert _steps(mlflow_client, run.info.run_id, key) == [1, 2, 3], key
    experiment = get_experiment(database, "exp-mlflow")
    assert metrics["test_window_accuracy"] == pytest.approx(experiment["test_accuracy"])
    assert metrics["test_record_accuracy"] == pytest.approx(experiment["test_record_accuracy"])
    assert tags["pfd.job_id"] == message.message_id and tags["pfd.root_id"] == message.message_id
    assert tags["pfd.queue"] == "gpu_training" and tags["device"] == "cpu" and tags["pfd.host"]
    files = {f.path for f in mlflow_client.list_artifacts(run.info.run_id)} | {
        f.path for folder in ("model", "figures") for f in mlflow_client.list_artifacts(run.info.run_id, folder)}
    assert {"model/best.pt", "metrics.json", "test_predictions.npz",
            "figures/confusion_matrix.png", "figures/roc.png"} <= files

    # And pfd prints the run's MLflow link
    shown = pfd_mlflow(mlflow_server, "link", "exp-mlflow")
    assert shown["url"] == f"{mlflow_server.uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


def test_mlflow_stopped_mid_run_does_not_fail_the_job_and_the_run_completes_once_it_is_back(
        lane, mlflow_workers, mlflow_server, mlflow_client, tiny_dataset, database):
    # Given a training that pauses after each epoch, its run started in MLflow
    mlflow_workers.stop("gpu_training")
    lane.start_gpu_worker(mlflow_workers, "gpu_training_slow", epoch_delay_s=EPOCH_DELAY_S)
    message = lane.send(train_model, experiment_id="exp-mlflow-gap", dataset_id=tiny_dataset["dataset_id"],
                        **_training(4))
    run_id = wait_until(lambda: find_mlflow_run(database, "experiment", "exp-mlflow-gap"), timeout=60,
                        what="the run to be created")

    # When MLflow goes away mid-training
    mlflow_server.stop()
    try:
        # Then the job's status text reports the gap, and the job still succeeds
        wait_until(lambda: "MLflow unreachable" in (lane.job(message.message_id).status or ""), timeout=60,
                   what="the gap in the status text")
        job = lane.wait(message.message_id, timeout=120)
        assert job.state == "succeeded", (job.error_type, job.error_message)
        assert "mlflow.unreachable" in mlflow_workers.log("gpu_training_slow")
    finally:
        mlflow_server.start()

    # And once it is back, the run completes with every epoch logged exactly once
    run = _finished_run(mlflow_client, database, "exp-mlflow-gap", timeout=90)
    assert run.info.run_id == run_id
    for key in EPOCH_METRICS:
        assert _steps(mlflow_client, run_id, key) == [1, 2, 3, 4], key
    assert "test_window_accuracy" in run.data.metrics
    assert "mlflow.reachable" in mlflow_workers.log("gpu_training_slow")


def test_worker_killed_mid_training_leaves_one_run_with_no_duplicated_epoch_metrics(
        lane, mlflow_workers, mlflow_client, tiny_dataset, database):
    import signal

    from actors.platform.mlflow_runs import RECORD_TAG

    # Given a training past its first epoch, its run started in MLflow
    for name in ("gpu_training", "gpu_training_slow"):
        mlflow_workers.stop(name)
    lane.start_gpu_worker(mlflow_workers, "gpu_training_slow", epoch_delay_s=EPOCH_DELAY_S)
    message = lane.send(train_model, experiment_id="exp-mlflow-kill", dataset_id=tiny_dataset["dataset_id"],
                        **_training(4))
    wait_until(lambda: int((lane.job(message.message_id).metrics or {}).get("epoch", 0)) >= 1, timeout=60,
               what="a first epoch")
    run_id = wait_until(lambda: find_mlflow_run(database, "experiment", "exp-mlflow-kill"), timeout=30,
                        what="the run to be created")

    # When its worker is killed outright and the message is redelivered to a new one
    mlflow_workers.signal("gpu_training_slow", signal.SIGKILL)
    mlflow_workers.processes["gpu_training_slow"].wait(10)
    lane.start_gpu_worker(mlflow_workers, "gpu_training", ready=False)
    job = lane.wait(message.message_id, timeout=120)
    assert job.state == "succeeded", (job.error_type, job.error_message)

    # Then the same run is completed, alone, with each epoch logged once
    run = _finished_run(mlflow_client, database, "exp-mlflow-kill")
    assert run.info.run_id == run_id
    runs = mlflow_client.search_runs([run.info.experiment_id], filter_string=f"tags.`{RECORD_TAG}` = 'experiment:exp-mlflow-kill'")
    assert [r.info.run_id for r in runs] == [run_id]
    for key in EPOCH_METRICS:
        assert _steps(mlflow_client, run_id, key) == [1, 2, 3, 4], key


def test_a_classical_training_is_a_run_with_its_test_metrics_and_model_file(
        lane, mlflow_workers, mlflow_client, tiny_dataset, database):
    for name in ("gpu_training", "gpu_training_slow"):
        mlflow_workers.stop(name)
    lane.start_gpu_worker(mlflow_workers, "gpu_training")
    message = lane.send(train_model, experiment_id="exp-mlflow-rf", dataset_id=tiny_dataset["dataset_id"],
                        model_key="rf", model_args={"n_estimators": 10})
    job = lane.wait(message.message_id, timeout=120)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    run = _finished_run(mlflow_client, database, "exp-mlflow-rf")
    assert run.data.params["model_key"] == "rf" and run.data.params["model.n_estimators"] == "10"
    assert run.data.metrics["test_window_accuracy"] == pytest.approx(get_experiment(database, "exp-mlflow-rf")["test_accuracy"])
    assert not mlflow_client.get_metric_history(run.info.run_id, "val_acc")  # no epochs
    model_files = [f.path for f in mlflow_client.list_artifacts(run.info.run_id, "model")]
    assert len(model_files) == 1 and Path(model_files[0]).name == Path(get_experiment(database, "exp-mlflow-rf")["model_path"]).name
