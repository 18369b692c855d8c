"""translate_legacy: every old task's documented example config (docs/migration.md) into a payload
its new actor accepts, or refused with every key it cannot carry named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from actors.legacy import LEGACY_TASKS, LegacyConfigError, translate_legacy

DOC = Path(__file__).resolve().parents[2] / "docs" / "migration.md"
BLOCK = re.compile(r"```json (legacy(?:-refused)?):(\w+)\n(.*?)\n```(?:\nrefused: `([^`]*)`)?", re.DOTALL)


def _examples() -> list[tuple[str, str, dict, str | None]]:
    return [(kind, task, json.loads(body), reason) for kind, task, body, reason in BLOCK.findall(DOC.read_text())]


EXAMPLES = _examples()


def test_every_old_task_has_a_documented_example_that_translates():
    translated = {task for kind, task, _, _ in EXAMPLES if kind == "legacy"}
    assert translated == set(LEGACY_TASKS)
    assert len(LEGACY_TASKS) == 23  # the old platform's 23 tasks


@pytest.mark.parametrize(("kind", "task", "config", "reason"), EXAMPLES, ids=[f"{k}:{t}" for k, t, _, _ in EXAMPLES])
def test_documented_example_configs_translate_or_are_refused_with_their_reason(app, kind, task, config, reason):
    import dramatiq

    if kind == "legacy-refused":
        with pytest.raises(LegacyConfigError) as refused:
            translate_legacy(task, config)
        assert reason in str(refused.value)
        return
    moved = translate_legacy(task, config)
    actor = dramatiq.get_broker().get_actor(moved["actor"])
    assert actor.actor_name == LEGACY_TASKS[task].actor
    # What send() accepts: building the message validates the payload again.
    message = actor.message(**moved["payload"])
    assert message.kwargs


def test_units_and_names_that_changed_are_converted_not_passed_through(app):
    assert translate_legacy("generate_dataset", {"load_range": [0.3, 1.0]})["payload"]["load_range"] == [30.0, 100.0]
    hpo = translate_legacy("run_hpo_campaign", {"dataset_id": "ds-1", "model_key": "rf", "metric": "f1_score"})
    assert hpo["payload"]["spec"] == {"model_key": "rf", "metric": "val_f1_macro"}
    assert translate_legacy("extract_features", {"dataset_id": "ds-1", "domain": "all"})["payload"] == {
        "dataset_id": "ds-1"}
    coverage = translate_legacy("run_coverage", {"path": "tests"})
    assert coverage == {"actor": "run_test_suite", "payload": {"coverage": True, "path": "tests"}}
    assert translate_legacy("run_quality_checks", {"path": "a", "tools": ["flake8"]})["payload"]["tools"] == [
        "ruff_check"]
    assert translate_legacy("import_mat_dataset", {"paths": ["d"], "auto_normalize": True})["payload"] == {
        "paths": ["d"], "normalize": "file"}
    assert translate_legacy("import_mat_dataset", {"paths": ["d"], "auto_normalize": False})["payload"][
        "normalize"] == "none"


def test_every_key_that_cannot_be_carried_is_named_at_once(app):
    with pytest.raises(LegacyConfigError) as refused:
        translate_legacy("run_quality_checks", {"path": "a", "tools": ["pylint"], "max_line_length": 100,
                                                "rcfile": ".pylintrc"})
    text = str(refused.value)
    assert "'tools': pylint is not run" in text and "'max_line_length'" in text and "'rcfile'" in text
    with pytest.raises(LegacyConfigError, match="unknown old task 'train'; known: generate_dataset"):
        translate_legacy("train", {})
    with pytest.raises(LegacyConfigError, match=r"translated for export_onnx: .*opset"):
        translate_legacy("export_onnx", {"experiment_id": "exp-1", "opset": 99})
