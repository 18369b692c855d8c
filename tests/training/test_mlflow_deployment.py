"""A ready deployment in MLflow: its variants and benchmark logged, the recommended variant
registered with alias ``candidate``; ``pfd mlflow promote`` moves ``champion``."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.deploy import benchmark_models, export_onnx
from actors.store.deployments import get_deployment
from actors.store.mlflow_runs import find_mlflow_run
from tests.mlflow_server import pfd_mlflow, worker_env
from tests.records import record_trained_experiment
from tests.training.conftest import Lane
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

MODEL = {"model_key": "cnn1d", "model_args": {"width": 4, "depth": 1}}
TRAINING = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def cpu_worker(lane: Lane, mlflow_server, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One cpu_processing worker (one process, one thread) on the lane, logging to the test MLflow server."""
    workers = lane.workers(tmp_path_factory.mktemp("mlflow-deploy-logs"))
    workers.extra_env.update(worker_env(mlflow_server))
    try:
        workers.start("cpu_processing", command=workers.cpu_command(1))
        yield workers
    finally:
        workers.stop_all()


def test_a_ready_deployment_registers_its_recommended_variant_with_the_candidate_alias(
        lane, cpu_worker, mlflow_server, mlflow_client, tiny_dataset, database):
    # Given a trained experiment exported to ONNX, then benchmarked, on a worker that logs to MLflow
    experiment = record_trained_experiment(database, "exp-mlflow-dep", tiny_dataset, MODEL, TRAINING)
    export = lane.wait(lane.send(export_onnx, experiment_id=experiment["experiment_id"]).message_id, timeout=180)
    assert export.state == "succeeded", (export.error_type, export.error_message, cpu_worker.log("cpu_processing")[-2000:])
    deployment_id = export.result["deployment_id"]
    bench = lane.wait(lane.send(benchmark_models, deployment_id=deployment_id, batch_sizes=[1], warmup=1,
                                runs=3).message_id, timeout=180)
    assert bench.state == "succeeded", (bench.error_type, bench.error_message)
    recommended = get_deployment(database, deployment_id)["benchmark"]["recommended"]

    # Then the recommended variant is a new version of the registered model "cnn1d", alias candidate
    version = wait_until(lambda: find_mlflow_run(database, "model_version", deployment_id), timeout=60,
                         what="the model version")
    candidate = wait_until(lambda: _alias(mlflow_client, "cnn1d", "candidate"), timeout=30, what="the candidate alias")
    assert candidate.version == version and candidate.tags["pfd.variant"] == recommended
    assert candidate.tags["pfd.deployment_id"] == deployment_id
    # And the deployment's run holds every variant's file, the benchmark's figures and the registered source
    run_id = find_mlflow_run(database, "deployment", deployment_id)
    assert candidate.run_id == run_id
    run = wait_until(lambda: (r := mlflow_client.get_run(run_id)).info.status == "FINISHED" and r, timeout=30,
                     what="the deployment run to finish")
    variants = {f.path for f in mlflow_client.list_artifacts(run_id, "variants")}
    assert {"variants/torch_fp32", "variants/onnx_fp32"} <= variants
    assert {Path(f.path).suffix for f in mlflow_client.list_artifacts(run_id, "benchmark")} == {".json", ".png"}
    assert run.data.metrics["onnx_fp32.p50_ms"] > 0 and run.data.params["recommended"] == recommended

    # When an operator promotes that version, champion points at it
    moved = pfd_mlflow(mlflow_server, "promote", "cnn1d", version)
    assert moved["version"] == version and _alias(mlflow_client, "cnn1d", "champion").version == version


def _alias(client, name: str, alias: str):  # type: ignore[no-untyped-def]
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
