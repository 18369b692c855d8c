"""Event types, payload schemas, links and templates (plain Python, no broker)."""

from __future__ import annotations

import pytest

from pipeline.errors import EventInvalid, InvalidInput
from pipeline.notify.events import EVENTS, build_link, default_enabled, event_link, parse_event
from pipeline.notify.templates import SUBJECTS, render, webhook_body
from pipeline.notify.webhook import encode_body, sign, verify

BASE = "https://dash.example.test/app"

# One valid payload per event type (the smallest one each schema accepts).
SAMPLES = {
    "dataset.generated": {"dataset_id": "ds-1", "n_records": 40},
    "dataset.imported": {"dataset_id": "ds-2", "n_records": 12, "n_files": 3},
    "training.completed": {"experiment_id": "exp-1", "model": "cnn1d", "metrics": {"accuracy": 0.97}},
    "training.failed": {"experiment_id": "exp-1", "error": "CUDA out of memory"},
    "hpo.completed": {"study_id": "st-1", "n_trials": 20, "best_value": 0.93, "best_params": {"lr": 0.001}},
    "hpo.failed": {"study_id": "st-1", "error": "storage unreachable"},
    "nas.completed": {"search_id": "nas-1", "n_candidates": 8},
    "nas.failed": {"search_id": "nas-1", "error": "no trial completed: {'failed': 8}"},
    "xai.completed": {"explanation_id": "x-1", "method": "shap", "n_signals": 16},
    "deployment.ready": {"deployment_id": "dep-1", "model_id": "m-1", "format": "onnx"},
    "evaluation.completed": {"evaluation_id": "ev-1", "model_id": "m-1", "metrics": {"f1": 0.9}},
    "quality.completed": {"run_id": "q-1", "run_type": "test_suite", "target": "tests", "passed": True},
    "job.failed": {"message_id": "m-123", "actor": "generate_dataset", "attempts": 4},
    "job.progress": {"message_id": "m-123", "actor": "train", "progress": 0.5},
    "deadletters.reported": {"total": 12, "threshold": 10, "counts": {"cpu_processing/generate_dataset": 12}},
}
ISSUE_EVENTS = {
    "dataset.generated",
    "dataset.imported",
    "training.completed",
    "training.failed",
    "hpo.completed",
    "hpo.failed",
    "nas.completed",
    "xai.completed",
    "deployment.ready",
    "evaluation.completed",
    "quality.completed",
    "job.failed",
}


def test_every_event_of_the_issue_exists_with_a_subject_and_a_sample():
    assert ISSUE_EVENTS <= set(EVENTS)
    assert set(SUBJECTS) == set(EVENTS) == set(SAMPLES)


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_each_event_renders_a_one_line_subject_and_a_body_ending_with_its_dashboard_link(event_type):
    event = parse_event(event_type, SAMPLES[event_type])
    link = event_link(BASE, event)
    rendered = render(event_type, event, link, event_id="ev-1")
    assert link.startswith(BASE + "/")
    assert rendered.subject.startswith("[PFD] ") and "\n" not in rendered.subject and "{" not in rendered.subject
    assert f"Open in the dashboard: {link}" in rendered.body


def test_link_quotes_ids_and_keeps_the_base_path():
    event = parse_event("dataset.generated", {"dataset_id": "a b/../c", "n_records": 1})
    assert event_link(BASE + "/", event) == BASE + "/datasets/a%20b%2F..%2Fc"
    assert build_link("http://10.0.0.5:8050", "/jobs/x") == "http://10.0.0.5:8050/jobs/x"


@pytest.mark.parametrize("base", ["", "dashboard", "ftp://host/x", "javascript:alert(1)"])
def test_link_refuses_a_dashboard_url_that_is_not_absolute_http(base):
    with pytest.raises(InvalidInput, match="dashboard URL"):
        build_link(base, "/jobs/x")


def test_unknown_event_type_is_refused_with_the_known_types():
    with pytest.raises(EventInvalid, match=r"unknown event type 'training\.complete'.*training\.completed"):
        parse_event("training.complete", {})


def test_bad_payload_is_refused_naming_each_field():
    with pytest.raises(EventInvalid, match=r"n_records: Input should be greater than or equal to 0.*extra: Extra"):
        parse_event("dataset.generated", {"dataset_id": "ds", "n_records": -1, "extra": 1})
    with pytest.raises(EventInvalid, match=r"dataset_id: Field required"):
        parse_event("dataset.generated", {"n_records": 1})


def test_defaults_turn_failures_and_completions_on_and_progress_off():
    for channel in ("email", "webhook"):
        assert default_enabled("training.failed", channel)
        assert default_enabled("training.completed", channel)
        assert default_enabled("job.failed", channel)
        assert not default_enabled("job.progress", channel)


def test_subject_of_a_payload_with_line_breaks_stays_on_one_line():
    event = parse_event("xai.completed", {"explanation_id": "x", "method": "shap\r\nBcc: evil@example", "n_signals": 1})
    rendered = render("xai.completed", event, BASE, event_id="ev")
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_a_failed_architecture_search_is_a_failure_linked_to_its_search():
    event = parse_event("nas.failed", SAMPLES["nas.failed"])
    assert type(event).kind == "failure" and default_enabled("nas.failed", "email")
    link = event_link(BASE, event)
    assert link == BASE + "/nas/nas-1"
    assert render("nas.failed", event, link, event_id="ev").subject == "[PFD] Architecture search nas-1 failed"


def test_webhook_body_is_signed_over_the_exact_bytes_sent():
    event = parse_event("hpo.completed", SAMPLES["hpo.completed"])
    rendered = render("hpo.completed", event, BASE, event_id="ev-9")
    body = encode_body(webhook_body("hpo.completed", event, rendered, BASE, event_id="ev-9", user="u", sent_at="t"))
    signature = sign("secret", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify("secret", body, signature)
    assert not verify("other", body, signature)
    assert not verify("secret", body + b" ", signature)


def test_a_long_error_is_shortened_to_head_and_tail_never_refused():
    error = "first line of the error\n" + "x" * 6000 + "\nlast line of the error"
    typed = parse_event("job.failed", {"message_id": "m-1", "actor": "import_mat_dataset", "error_message": error})
    assert len(typed.error_message) == 2000
    assert typed.error_message.startswith("first line of the error")
    assert typed.error_message.endswith("last line of the error")
    assert f"[{len(error)} characters in all; the middle is cut]" in typed.error_message
