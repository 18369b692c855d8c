"""How every actor is declared: a typed payload, the policy from the queue table, a thin body."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import dramatiq
from pydantic import BaseModel, ConfigDict, ValidationError

from actors.platform.context import JobContext, current_job
from actors.platform.errors import JobTimedOut, PayloadInvalid, RecordNotFound
from actors.platform.references import check_references, named_records
from config.queues import ActorPolicy, policy_for, retried_error_types
from pipeline.errors import InvalidInput, StopRequested

__all__ = ["Payload", "PayloadActor", "RetryTransient", "job_actor", "validate_payload"]

P = TypeVar("P", bound=BaseModel)

# Bad input and hit time limits: the job's record and its job.finished line say all there is.
EXPECTED_FAILURES: tuple[type[BaseException], ...] = (PayloadInvalid, InvalidInput, RecordNotFound, JobTimedOut)


class Payload(BaseModel):
    """Base of every payload schema: JSON primitives only, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def references(self) -> list[tuple[str, str, str]]:
        """The ``(field, kind, id)`` of every record this payload names that must exist (checked at send)."""
        return named_records(self)

    @classmethod
    def documented_options(cls) -> dict[str, list[dict[str, Any]]]:
        """What each free-form dict field takes, as rows (``actors.platform.catalog.option_row``); none by default."""
        return {}


def validate_payload(actor_name: str, schema: type[P], kwargs: dict[str, Any]) -> P:
    """Validate ``kwargs`` against ``schema``; raise ``PayloadInvalid`` with every problem named."""
    try:
        return schema.model_validate(kwargs)
    except ValidationError as exc:
        # A schema's own check raises ValueError: its message is the problem, without pydantic's prefix.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise PayloadInvalid(f"invalid payload for {actor_name}: {problems}") from None


class PayloadActor(dramatiq.Actor):
    """An actor whose keyword payload is validated when a message is built, and whose ids are checked on send."""

    schema: type[BaseModel] | None = None

    def _json_kwargs(self, kwargs: dict[str, Any] | None) -> tuple[dict[str, Any] | None, BaseModel | None]:
        if self.schema is None:
            return kwargs, None
        payload = validate_payload(self.actor_name, self.schema, kwargs or {})
        return payload.model_dump(mode="json"), payload

    def message_with_options(self, *, args=(), kwargs=None, **options):  # type: ignore[no-untyped-def]
        """Validate the payload, then build the message with JSON-normalised arguments."""
        return super().message_with_options(args=args, kwargs=self._json_kwargs(kwargs)[0], **options)

    def send_with_options(self, *, args=(), kwargs=None, delay=None, **options):  # type: ignore[no-untyped-def]
        """Validate the payload, refuse ids that name no record (when this producer can read the
        database), then enqueue. Messages built with ``message()`` for a group or pipeline skip the
        id check: their worker refuses a missing record as soon as it starts."""
        if isinstance(delay, timedelta):
            delay = int(delay.total_seconds() * 1000)
        kwargs, payload = self._json_kwargs(kwargs)
        if isinstance(payload, Payload):
            check_references(self.actor_name, payload.references())
        message = dramatiq.Actor.message_with_options(self, args=args, kwargs=kwargs, **options)
        return self.broker.enqueue(message, delay=delay)


class RetryTransient:
    """Retry predicate: transient faults only, at most ``max_retries`` times."""

    def __init__(self, policy: ActorPolicy) -> None:
        self.max_retries = policy.max_retries
        self.retried = policy.retried
        self._types: tuple[type[BaseException], ...] | None = None

    def __call__(self, retries: int, exception: BaseException) -> bool:
        """Return whether the failed attempt number ``retries`` should be retried."""
        if self._types is None:
            self._types = retried_error_types(self.retried)
        return retries < self.max_retries and _caused_by(exception, self._types)


def _caused_by(exception: BaseException | None, types: tuple[type[BaseException], ...]) -> bool:
    seen = 0
    while exception is not None and seen < 10:
        if isinstance(exception, types):
            return True
        exception = exception.__cause__ or exception.__context__
        seen += 1
    return False


def job_actor(
    *,
    schema: type[P],
    name: str | None = None,
    policy: ActorPolicy | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], PayloadActor]:
    """Declare an actor ``fn(payload, job, *piped)`` with its payload schema and table policy.

    The body receives the validated payload and the ``JobContext``. Extra ``options`` go to
    Dramatiq as actor options (``periodic=cron(...)`` for periodiq). A ``StopRequested``
    from ``pipeline`` ends the job ``cancelled`` (if a cancel was asked) or ``timed_out``.
    """

    def decorator(fn: Callable[..., Any]) -> PayloadActor:
        actor_name = name or fn.__name__
        actor_policy = policy or policy_for(actor_name)

        @functools.wraps(fn)
        def run(*piped: Any, **kwargs: Any) -> Any:
            payload = validate_payload(actor_name, schema, kwargs)
            job: JobContext = current_job()
            try:
                return fn(payload, job, *piped)
            except StopRequested:
                if job.cancel_seen:
                    job.outcome = "cancelled"
                    return None
                raise JobTimedOut(
                    f"{actor_name} passed its time limit of {actor_policy.time_limit_ms / 1000:g} s"
                ) from None

        actor = dramatiq.actor(
            run,
            actor_class=PayloadActor,
            actor_name=actor_name,
            queue_name=actor_policy.queue,
            time_limit=actor_policy.time_limit_ms,
            max_retries=actor_policy.max_retries,
            min_backoff=actor_policy.min_backoff_ms,
            max_backoff=actor_policy.max_backoff_ms,
            retry_when=RetryTransient(actor_policy),
            store_results=actor_policy.store_results,
            reports_own_failures=actor_policy.reports_own_failures,
            # Expected failures: Dramatiq logs them without a traceback (job.finished says
            # why, at WARNING) and never retries them. A bug keeps its traceback.
            throws=EXPECTED_FAILURES,
            **options,
        )
        actor.schema = schema
        return actor

    return decorator
