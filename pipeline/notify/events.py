"""The notification events: one type per outcome, each with a typed payload and a dashboard link.

Links are built from a base URL the caller passes in (the dashboard's, from settings), never
from a literal host.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar
from urllib.parse import quote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from pipeline.errors import EventInvalid, InvalidInput

__all__ = [
    "CHANNELS",
    "EVENTS",
    "EVENT_TYPES",
    "KINDS",
    "EventPayload",
    "build_link",
    "default_enabled",
    "event_link",
    "parse_event",
]

# The in-app inbox always gets a row; the others follow preferences.
CHANNELS = ("email", "webhook")
KINDS = ("completion", "failure", "progress")

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=200)]
ERROR_TEXT_MAX = 2000


def _shorten_error(value: Any) -> Any:
    """Cut a long error to its head and tail: an error's length is never a reason to lose its event."""
    if isinstance(value, str) and len(value) > ERROR_TEXT_MAX:
        marker = f" … [{len(value)} characters in all; the middle is cut] … "
        keep = ERROR_TEXT_MAX - len(marker)
        return value[: keep // 2] + marker + value[len(value) - (keep - keep // 2):]
    return value


ErrorText = Annotated[str, BeforeValidator(_shorten_error), StringConstraints(max_length=ERROR_TEXT_MAX)]
Count = Annotated[int, Field(ge=0)]
Scalar = float | int | str | bool | None


class EventPayload(BaseModel):
    """Base of every event payload: JSON primitives only, unknown fields refused.

    ``kind`` decides the default preferences; ``link`` is the dashboard path, formatted with
    the payload's fields (each one quoted as a path segment).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: ClassVar[str] = "completion"
    link: ClassVar[str] = "/"

    job_id: Id | None = None


class DatasetGenerated(EventPayload):
    """A generated dataset is ready."""

    link: ClassVar[str] = "/datasets/{dataset_id}"
    dataset_id: Id
    name: Text = ""
    n_records: Count


class DatasetImported(EventPayload):
    """MATLAB files were imported into a dataset."""

    link: ClassVar[str] = "/datasets/{dataset_id}"
    dataset_id: Id
    name: Text = ""
    n_records: Count
    n_files: Count
    n_failed: Count = 0


class TrainingCompleted(EventPayload):
    """A training run finished."""

    link: ClassVar[str] = "/experiments/{experiment_id}"
    experiment_id: Id
    model: Text = ""
    metrics: dict[str, float] = Field(default_factory=dict, max_length=50)
    duration_s: float | None = Field(None, ge=0)


class TrainingFailed(EventPayload):
    """A training run failed."""

    kind: ClassVar[str] = "failure"
    link: ClassVar[str] = "/experiments/{experiment_id}"
    experiment_id: Id
    model: Text = ""
    error: ErrorText


class HpoCompleted(EventPayload):
    """A hyperparameter search finished."""

    link: ClassVar[str] = "/hpo/{study_id}"
    study_id: Id
    n_trials: Count
    metric: Text = ""
    best_value: float | None = None
    best_params: dict[str, Scalar] = Field(default_factory=dict, max_length=100)


class HpoFailed(EventPayload):
    """A hyperparameter search failed."""

    kind: ClassVar[str] = "failure"
    link: ClassVar[str] = "/hpo/{study_id}"
    study_id: Id
    error: ErrorText


class NasCompleted(EventPayload):
    """A neural architecture search finished."""

    link: ClassVar[str] = "/nas/{search_id}"
    search_id: Id
    n_candidates: Count
    best_candidate: Text = ""
    metric: Text = ""
    best_value: float | None = None


class NasFailed(EventPayload):
    """A neural architecture search failed (no candidate completed)."""

    kind: ClassVar[str] = "failure"
    link: ClassVar[str] = "/nas/{search_id}"
    search_id: Id
    error: ErrorText


class XaiCompleted(EventPayload):
    """A batch of explanations finished."""

    link: ClassVar[str] = "/xai/{explanation_id}"
    explanation_id: Id
    method: Text
    n_signals: Count
    n_failed: Count = 0


class DeploymentReady(EventPayload):
    """A model was exported, optimised and benchmarked."""

    link: ClassVar[str] = "/deployments/{deployment_id}"
    deployment_id: Id
    model_id: Id
    format: Text
    size_bytes: Count | None = None
    latency_ms: float | None = Field(None, ge=0)


class EvaluationCompleted(EventPayload):
    """A model evaluation finished."""

    link: ClassVar[str] = "/evaluations/{evaluation_id}"
    evaluation_id: Id
    model_id: Id
    metrics: dict[str, float] = Field(default_factory=dict, max_length=50)


class QualityCompleted(EventPayload):
    """A quality run (test suite, benchmarks, code checks) finished."""

    link: ClassVar[str] = "/quality/{run_id}"
    run_id: Id
    run_type: Text
    target: Text = ""
    passed: bool
    n_issues: Count = 0


class JobFailed(EventPayload):
    """Any other job failed after its retries."""

    kind: ClassVar[str] = "failure"
    link: ClassVar[str] = "/jobs/{message_id}"
    message_id: Id
    actor: Text
    queue: Text = ""
    error_type: Text = ""
    error_message: ErrorText = ""
    attempts: Count = 1


class JobProgress(EventPayload):
    """A long job reached a milestone (inbox only unless a user turns it on)."""

    kind: ClassVar[str] = "progress"
    link: ClassVar[str] = "/jobs/{message_id}"
    message_id: Id
    actor: Text
    progress: float = Field(ge=0.0, le=1.0)
    status: Text = ""


class DeadLettersReported(EventPayload):
    """Dead letters passed their threshold (counts per ``queue/actor``)."""

    kind: ClassVar[str] = "failure"
    link: ClassVar[str] = "/jobs?state=failed"
    total: Count
    threshold: Count
    counts: dict[str, Count] = Field(default_factory=dict, max_length=500)


EVENTS: dict[str, type[EventPayload]] = {
    "dataset.generated": DatasetGenerated,
    "dataset.imported": DatasetImported,
    "training.completed": TrainingCompleted,
    "training.failed": TrainingFailed,
    "hpo.completed": HpoCompleted,
    "hpo.failed": HpoFailed,
    "nas.completed": NasCompleted,
    "nas.failed": NasFailed,
    "xai.completed": XaiCompleted,
    "deployment.ready": DeploymentReady,
    "evaluation.completed": EvaluationCompleted,
    "quality.completed": QualityCompleted,
    "job.failed": JobFailed,
    "job.progress": JobProgress,
    "deadletters.reported": DeadLettersReported,
}
EVENT_TYPES = tuple(EVENTS)


def parse_event(event_type: str, payload: dict[str, Any]) -> EventPayload:
    """Validate ``payload`` against ``event_type``'s schema; raise ``EventInvalid`` naming every problem."""
    schema = EVENTS.get(event_type)
    if schema is None:
        raise EventInvalid(f"unknown event type {event_type!r}; known types: {', '.join(EVENT_TYPES)}")
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}" for err in exc.errors()
        )
        raise EventInvalid(f"invalid payload for event {event_type}: {problems}") from None


def build_link(base_url: str, path: str) -> str:
    """Join the dashboard's ``base_url`` (http or https, any path prefix) and ``path``."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"the dashboard URL must be an absolute http(s) URL, got {base_url!r}")
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def event_link(base_url: str, event: EventPayload) -> str:
    """Return the dashboard link of ``event``, its ids quoted as path segments."""
    values = {name: quote(str(value), safe="") for name, value in event.model_dump().items()}
    return build_link(base_url, type(event).link.format_map(values))


def default_enabled(event_type: str, channel: str) -> bool:
    """Default preference: failures and completions on, progress events off."""
    return EVENTS[event_type].kind != "progress"
