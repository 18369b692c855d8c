"""A ready deployment in MLflow: a run with its variants and benchmark, and a registered model version.

The run (tagged with the deployment and experiment) holds every variant's file under
``variants/<name>/``, the benchmark's JSON and chart, and each variant's figures as metrics
(``<variant>.p50_ms``, ``.size_bytes``, ``.accuracy``, ``.argmax_agreement``). The recommended
variant becomes a new version of the registered model named after the experiment's model key,
with alias ``candidate``; ``pfd mlflow promote`` moves another (``champion``) onto a version. Aliases,
not the deprecated registry stages. The version is kept in ``mlflow_runs`` (kind
``model_version``), so a redelivered benchmark stage registers nothing twice.
"""

from __future__ import annotations

from typing import Any

from actors.deploy.inputs import variant_present
from actors.platform.artifact_files import local_file
from actors.platform.mlflow_runs import TrackedRun
from actors.platform.mlflow_writer import mlflow_writer
from actors.record_files import variant_file
from actors.store.db import Database
from actors.store.deployments import get_deployment
from actors.store.experiments import get_experiment
from actors.store.mlflow_runs import find_mlflow_run, keep_mlflow_run
from config.settings import Settings

__all__ = ["CANDIDATE_ALIAS", "track_deployment"]

CANDIDATE_ALIAS = "candidate"


def track_deployment(settings: Settings, database: Database, deployment_id: str) -> None:
    """Queue a ready deployment's run and its registration; nothing when MLflow is not configured."""
    writer = mlflow_writer(settings)
    if writer is None or find_mlflow_run(database, "model_version", deployment_id) is not None:
        return  # off, or registered already (a redelivered benchmark stage that was done)
    deployment = get_deployment(database, deployment_id)
    if deployment["status"] != "ready" or not deployment["benchmark"]:
        return
    model_key = get_experiment(database, deployment["experiment_id"])["model_key"]
    table = deployment["benchmark"]
    run = TrackedRun(writer, database, experiment=settings.mlflow_experiment, kind="deployment",
                     record_id=deployment_id, name=f"{deployment_id} ({model_key})",
                     tags={"pfd.deployment_id": deployment_id, "pfd.experiment_id": deployment["experiment_id"],
                           "pfd.model_key": model_key, "pfd.recommended": table["recommended"]})
    run.params({"model_key": model_key, "experiment_id": deployment["experiment_id"],
                "config_hash": deployment["config_hash"], "recommended": table["recommended"]})
    run.metrics({f"{v['name']}.{name}": value for v in table["variants"] for name, value in (
        ("p50_ms", v["latency"][0]["p50_ms"]), ("size_bytes", v["size_bytes"]), ("accuracy", v["accuracy"]),
        ("argmax_agreement", v["argmax_agreement"]))})
    for variant in deployment["variants"]:
        if variant_present(variant):
            run.artifact(variant_file(variant), f"variants/{variant['name']}")
    for key in ("benchmark_json_path", "benchmark_png_path"):
        if deployment.get(key):
            run.artifact(str(local_file(deployment[key])), "benchmark")
    run.writer.submit(f"register {deployment_id}", lambda client: _register(client, database, run, model_key,
                                                                            table["recommended"]))
    run.end("FINISHED")


def _register(client: Any, database: Database, run: TrackedRun, model_key: str, recommended: str) -> None:
    """Register the recommended variant as a version of ``model_key`` with alias ``candidate`` (on the writer)."""
    from mlflow.exceptions import MlflowException

    if run.run_id is None:
        return  # the run could not be started (logged): there is nothing to register
    version = find_mlflow_run(database, "model_version", run.record_id)
    if version is None:
        try:
            client.create_registered_model(model_key, description=f"PFD classifiers of model {model_key}")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{client.get_run(run.run_id).info.artifact_uri}/variants/{recommended}"
        created = client.create_model_version(model_key, source, run_id=run.run_id, tags={
            "pfd.deployment_id": run.record_id, "pfd.variant": recommended})
        version = keep_mlflow_run(database, "model_version", run.record_id, str(created.version))
    client.set_registered_model_alias(model_key, CANDIDATE_ALIAS, version)
