"""How every deployment stage runs: find its deployment, claim the stage, do the work, record result or failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded

from actors.deploy.inputs import deployable_experiment, original_variant
from actors.notifications import relay_now
from actors.platform.context import JobContext
from actors.platform.errors import ActorError, RecordConflict
from actors.store import deployments as store
from actors.store.db import Database, get_database
from config.settings import get_settings, mask_secrets
from pipeline.errors import InvalidInput, StopRequested

__all__ = ["run_stage"]

log = structlog.get_logger("pfd.deploy")


def _deployment_id(database: Database, stage: str, payload: Any, job: JobContext, previous: Any) -> str:
    """The deployment named by the piped summary or the payload, or a new one for the payload's experiment."""
    if previous is not None:
        if not isinstance(previous, dict) or previous.get("stage") not in store.STAGES:
            raise InvalidInput(f"{stage} received {type(previous).__name__}, not a deployment stage's summary")
        if payload.experiment_id or payload.deployment_id not in (None, previous["deployment_id"]):
            raise InvalidInput(f"{stage} in a pipeline works on deployment {previous['deployment_id']!r} only")
        return previous["deployment_id"]
    if payload.deployment_id or not payload.experiment_id:
        if not payload.deployment_id:
            raise InvalidInput(f"{stage} needs deployment_id or experiment_id (or a previous stage's summary)")
        return payload.deployment_id
    deployment_id = f"dep-{job.message_id}"  # a redelivered message finds the deployment it created
    store.ensure_deployment(database, deployment_id, experiment_id=payload.experiment_id,
                            config={"stage": stage, **payload.model_dump(mode="json", exclude={"experiment_id"})},
                            original=original_variant(deployable_experiment(database, payload.experiment_id)))
    return deployment_id


def _record_failure(database: Database, deployment_id: str, stage: str, job: JobContext, exc: BaseException) -> None:
    """Mark the stage and the deployment failed (or cancelled) with the reason, unless a retry follows."""
    actor = dramatiq.get_broker().actors.get(job.actor)
    if isinstance(exc, RecordConflict) or (actor and actor.options["retry_when"](job.attempt - 1, exc)):
        return  # another job holds the stage, or a retry follows
    cancelled = isinstance(exc, StopRequested) and job.cancel_seen
    timed_out = isinstance(exc, (StopRequested, TimeLimitExceeded)) and not cancelled
    reason = ("cancelled" if cancelled else "JobTimedOut: the stage passed its time limit" if timed_out
              else mask_secrets(f"{type(exc).__name__}: {exc}"))
    try:
        store.fail_stage(database, deployment_id, stage, job.message_id, reason, status="cancelled" if cancelled else "failed")
    except ActorError as store_exc:  # the stage's own error must still propagate
        log.error("deploy.record_failure_failed", stage=stage, error=mask_secrets(str(store_exc)))


def run_stage(stage: str, payload: Any, job: JobContext, piped: tuple[Any, ...], work: Callable[..., tuple]) -> dict | None:
    """Find and claim the stage, run ``work(experiment, deployment, folder)``, record its variants and result.

    ``work`` returns ``(variants, result, fields)``: the variant entries it made, the stage's compact result, and
    extra deployment fields (``events``, if there, go to the outbox with the stage's record and are relayed after
    it commits). Returns the deployment's summary (piped to the next stage), or None when the previous
    stage was cancelled. A stage already done returns its recorded summary without running again.
    """
    if piped and piped[0] is None:
        job.outcome = "cancelled"  # the previous stage was cancelled: so is the rest of its pipeline
        return None
    settings = get_settings()
    database = get_database(settings.database_url)
    previous = piped[0] if piped else None
    deployment_id = _deployment_id(database, stage, payload, job, previous)
    claim = store.claim_stage(database, deployment_id, stage, job.message_id)
    if claim.done:
        return claim.summary
    try:
        experiment = deployable_experiment(database, claim.deployment["experiment_id"])
        job.progress(0.0, stage)
        variants, result, fields = work(experiment, claim.deployment, settings.artifact_root / "deployments" / deployment_id)
        message = CurrentMessage.get_current_message()
        onward = message is not None and "pipe_target" in message.options  # a next stage will follow
        events = fields.pop("events", [])
        summary = store.complete_stage(
            database, deployment_id, stage, job.message_id, variants=variants, result=result,
            after=previous and {k: previous[k] for k in ("stage", "job_id")},
            status="ready" if stage == "benchmark" else "running" if onward else "partial", events=events, **fields)
    except BaseException as exc:
        _record_failure(database, deployment_id, stage, job, exc)
        raise
    if events:
        relay_now([event["event_id"] for event in events])
    return summary
