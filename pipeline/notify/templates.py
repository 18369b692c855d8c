"""Subject and body of each event, for the inbox and e-mail, and the webhook's JSON body."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipeline.notify.events import EventPayload

__all__ = ["SUBJECTS", "SUBJECT_PREFIX", "Rendered", "render", "webhook_body"]

SUBJECT_PREFIX = "[PFD]"

SUBJECTS: dict[str, str] = {
    "dataset.generated": "Dataset {dataset_id} generated ({n_records} records)",
    "dataset.imported": "Dataset {dataset_id} imported ({n_records} records from {n_files} files)",
    "training.completed": "Training of {experiment_id} completed",
    "training.failed": "Training of {experiment_id} failed",
    "hpo.completed": "Hyperparameter search {study_id} completed ({n_trials} trials)",
    "hpo.failed": "Hyperparameter search {study_id} failed",
    "nas.completed": "Architecture search {search_id} completed ({n_candidates} candidates)",
    "nas.failed": "Architecture search {search_id} failed",
    "xai.completed": "Explanations {explanation_id} ready ({n_signals} signals, {method})",
    "deployment.ready": "Deployment {deployment_id} of {model_id} ready ({format})",
    "evaluation.completed": "Evaluation {evaluation_id} of {model_id} completed",
    "quality.completed": "{run_type} run {run_id} on {target} {verdict} ({n_issues} issues)",
    "job.failed": "Job {actor} failed after {attempts} attempts",
    "job.progress": "{actor} is {percent} done",
    "deadletters.reported": "{total} dead letters waiting (threshold {threshold})",
}

_SPACE = re.compile(r"\s+")
_SUBJECT_LIMIT = 200


@dataclass(frozen=True)
class Rendered:
    """What a person reads: one subject line and a plain-text body."""

    subject: str
    body: str


def _one_line(text: str, limit: int) -> str:
    # Payload text ends up in a mail header: no line breaks, bounded length.
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={_value(item)}" for key, item in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render(event_type: str, event: EventPayload, link: str, *, event_id: str) -> Rendered:
    """Render ``event`` as a subject line and a body that ends with its dashboard link."""
    fields = event.model_dump()
    extras = {"verdict": "passed" if fields.get("passed") else "failed"}
    if "progress" in fields:
        extras["percent"] = f"{fields['progress']:.0%}"
    subject = _one_line(f"{SUBJECT_PREFIX} " + SUBJECTS[event_type].format_map({**fields, **extras}), _SUBJECT_LIMIT)
    details = [f"  {name}: {_value(value)}" for name, value in fields.items() if value not in (None, "", {})]
    body = "\n".join(
        [
            subject.removeprefix(SUBJECT_PREFIX + " "),
            "",
            *details,
            "",
            f"Open in the dashboard: {link}",
            "",
            "--",
            f"Event {event_id} ({event_type}). Choose which notifications you receive in the dashboard settings.",
            "",
        ]
    )
    return Rendered(subject=subject, body=body)


def webhook_body(
    event_type: str, event: EventPayload, rendered: Rendered, link: str, *, event_id: str, user: str, sent_at: str
) -> dict[str, Any]:
    """Return the JSON document POSTed to the webhook."""
    return {
        "id": event_id,
        "event": event_type,
        "kind": type(event).kind,
        "user": user,
        "sent_at": sent_at,
        "subject": rendered.subject,
        "link": link,
        "payload": event.model_dump(mode="json"),
    }
