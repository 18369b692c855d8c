"""``deploy_experiment``: record a deployment and send its pipeline export -> optimize -> quantize -> benchmark."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq

from actors.deploy.inputs import deployable_experiment, original_variant, variant_present
from actors.deploy.schemas import DeployExperiment, DeployOptions
from actors.deploy.stages import benchmark_models, export_onnx, optimize_model, quantize_model
from actors.platform.base import job_actor
from actors.platform.context import JobContext, lineage_options
from actors.platform.errors import JobNotFound
from actors.platform.jobs import get_job
from actors.store import deployments as store
from actors.store.db import get_database
from config.settings import get_settings

__all__ = ["deploy_experiment"]


def _stage_messages(deployment_id: str, options: DeployOptions, launcher: str) -> list[dramatiq.Message]:
    """The four stage messages; their ids derive from the launching job, so a redelivered launcher rebuilds them."""
    actors = zip(store.STAGES, (export_onnx, optimize_model, quantize_model, benchmark_models), strict=True)
    return [actor.message(**({"deployment_id": deployment_id} if stage == "export" else {}),
                          **getattr(options, stage).model_dump(mode="json"))
            # Each stage is a child of the launcher: Dramatiq enqueues the next one after the
            # previous stage's job is no longer current, so the lineage is stamped here.
            .copy(message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"pfd:{launcher}:{stage}")), options=lineage_options())
            for stage, actor in actors]


@job_actor(schema=DeployExperiment)
def deploy_experiment(payload: DeployExperiment, job: JobContext) -> dict:
    """Record the deployment and send its pipeline; a ready one for the same config is returned as recorded."""
    database = get_database(get_settings().database_url)
    experiment = deployable_experiment(database, payload.experiment_id)
    config = payload.options.model_dump(mode="json")
    deployment_id, config_hash = store.deployment_id_for(payload.experiment_id, config)
    spec: dict[str, Any] = {"experiment_id": payload.experiment_id, "config": config,
                            "config_hash": config_hash, "original": original_variant(experiment)}
    claim = store.open_deployment(database, deployment_id, job.message_id, **spec)
    if claim.action == "ready" and not all(variant_present(v) for v in claim.summary["variants"]):
        # Its files were cleaned up since: deploy again rather than point at nothing.
        claim = store.open_deployment(database, deployment_id, job.message_id, redo=True, **spec)
    if claim.action != "launch":
        return {**claim.summary, "launched": False}
    messages = _stage_messages(deployment_id, payload.options, job.message_id)
    record = store.record_launch(database, deployment_id, job.message_id,
                                 {stage: m.message_id for stage, m in zip(store.STAGES, messages, strict=True)})
    try:
        get_job(messages[0].message_id)  # a redelivered launcher whose pipeline already went out sends nothing
    except JobNotFound:
        dramatiq.pipeline(messages).run()
    return {**record, "launched": True}
