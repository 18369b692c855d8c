"""The old Celery tasks' configs as new actor payloads: ``translate_legacy(task_name, config)``.

Every old task has a row here (docs/migration.md is the same table for people): the actor
that replaces it, and what each old key becomes. A key is carried under its new name (with
its value converted where the unit or the vocabulary changed), or refused with the reason it
is gone. Keys the old and new payloads share pass through, and the result is validated by
the new actor's own schema, so a translated payload is one ``send()`` accepts. Nothing is
reinterpreted silently: an old config that cannot be carried whole raises
``LegacyConfigError`` naming every key at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from actors.platform.errors import PayloadInvalid

__all__ = ["LEGACY_TASKS", "Gone", "LegacyConfigError", "LegacyTask", "translate_legacy"]


class LegacyConfigError(PayloadInvalid):
    """Raised when an old task's config holds keys or values its new actor cannot carry."""


@dataclass(frozen=True)
class Gone:
    """An old key the new actor has no field for, and why."""

    reason: str


class _CannotCarry(Exception):
    """Raised by a converter with the reason an old value cannot be carried."""


# A converter gets the old value and returns {new key: new value}; it raises _CannotCarry
# with the reason when the value cannot be carried.
Convert = Callable[[Any], dict[str, Any]]
Rule = str | Convert | Gone


@dataclass(frozen=True)
class LegacyTask:
    """An old task: the actor that replaces it, its key rules, and fixed fields it implied."""

    actor: str
    keys: Mapping[str, Rule] = field(default_factory=dict)
    implied: Mapping[str, Any] = field(default_factory=dict)
    # Old keys that go inside one object of the new payload (an HPO campaign's ``spec``).
    nested: tuple[str, frozenset[str]] | None = None


def _load_range(value: Any) -> dict[str, Any]:
    """The old load range was a fraction of full load ([0.30, 1.00]); the new one is percent."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise _CannotCarry(f"must be two numbers (fractions of full load), got {value!r}")
    if max(value) > 1:
        raise _CannotCarry(f"the old task took fractions of full load (at most 1), got {value!r}: "
                         "is it already percent? Give it to generate_dataset as load_range directly")
    return {"load_range": [round(100 * float(v), 6) for v in value]}


def _hpo_metric(value: Any) -> dict[str, Any]:
    """The old metric names: ``f1_score`` is macro F1 on the validation split now."""
    return {"metric": "val_f1_macro" if value == "f1_score" else value}


def _domain(value: Any) -> dict[str, Any]:
    """``domain="all"`` (or one domain name) becomes ``domains`` (omitted: every domain)."""
    if value == "all":
        return {}
    if not isinstance(value, str):
        raise _CannotCarry(f"must be a domain name or 'all', got {value!r}")
    return {"domains": [value]}


def _auto_normalize(value: Any) -> dict[str, Any]:
    """The old boolean named no granularity: true is carried as one z-score per file.

    That is the reading of an importer that normalised each signal it loaded; a caller who
    wants per-record z-scores sends ``normalize="record"`` to the new actor.
    """
    if not isinstance(value, bool):
        raise _CannotCarry(f"must be true or false, got {value!r}; for a per-record z-score give "
                           "import_mat_dataset normalize='record' directly")
    return {"normalize": "file" if value else "none"}


def _lint_tools(value: Any) -> dict[str, Any]:
    """flake8's checks are ruff's (``ruff_check``); pylint has no counterpart here."""
    tools = [value] if isinstance(value, str) else list(value or [])
    if "pylint" in tools:
        raise _CannotCarry("pylint is not run any more: ruff_check covers the pyflakes and pycodestyle rules flake8 "
                         "ran, mypy checks types; ask for those")
    return {"tools": list(dict.fromkeys("ruff_check" if t == "flake8" else t for t in tools))}


_CAMPAIGN = frozenset({"model_key", "space", "method", "n_trials", "parallelism", "metric", "direction",
                       "model_args", "training", "seed"})
_NAS = frozenset({"space", "method", "n_candidates", "parallelism", "seed", "training", "register_best"})

LEGACY_TASKS: dict[str, LegacyTask] = {
    "generate_dataset": LegacyTask("generate_dataset", {"load_range": _load_range}),
    "import_mat_dataset": LegacyTask("import_mat_dataset", {"auto_normalize": _auto_normalize}),
    "train_model": LegacyTask("train_model"),
    "run_hpo_campaign": LegacyTask("run_hpo_campaign", {"metric": _hpo_metric}, nested=("spec", _CAMPAIGN)),
    "run_nas_campaign": LegacyTask("run_nas_campaign", nested=("spec", _NAS)),
    "explain_signal": LegacyTask("explain_signal"),
    "explain_batch": LegacyTask("explain_batch"),
    "export_onnx": LegacyTask("export_onnx"),
    "optimize_model": LegacyTask("optimize_model"),
    "quantize_model": LegacyTask("quantize_model"),
    "benchmark_models": LegacyTask("benchmark_models"),
    "deploy_experiment": LegacyTask("deploy_experiment"),
    "extract_features": LegacyTask("extract_features", {"domain": _domain}),
    "compute_importance": LegacyTask("compute_importance", {"domain": _domain}),
    "select_features": LegacyTask("select_features", {"domain": _domain}),
    "compute_correlation": LegacyTask("compute_correlation", {"domain": _domain}),
    "roc_analysis": LegacyTask("roc_analysis"),
    "error_analysis": LegacyTask("error_analysis"),
    "compare_architectures": LegacyTask("compare_architectures"),
    "run_tests": LegacyTask("run_test_suite", implied={"coverage": False}),
    "run_coverage": LegacyTask("run_test_suite", implied={"coverage": True}),
    "run_benchmarks": LegacyTask("run_benchmarks"),
    "run_quality_checks": LegacyTask("run_quality_checks", {"tools": _lint_tools}),
}


def _fields(actor_name: str) -> tuple[Any, set[str]]:
    """The new actor's payload schema and its field names (the broker must have it loaded)."""
    import dramatiq

    import actors.app  # noqa: F401  (the broker with every actor loaded, as a producer has it)

    schema = dramatiq.get_broker().get_actor(actor_name).schema
    return schema, set(schema.model_fields)


def translate_legacy(task_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Turn an old task's config into ``{"actor": new actor name, "payload": its payload}``.

    Old keys are renamed or converted by the task's rules, keys the new payload shares pass
    through, and the payload is validated by the new actor's schema.

    Raises:
        LegacyConfigError: an unknown task, or keys that cannot be carried (each named with
            why), or a payload the new actor refuses (every field at fault named).
    """
    from actors.platform.base import validate_payload

    task = LEGACY_TASKS.get(task_name)
    if task is None:
        raise LegacyConfigError(f"unknown old task {task_name!r}; known: {', '.join(LEGACY_TASKS)}")
    if not isinstance(config, Mapping):
        raise LegacyConfigError(f"the config of {task_name!r} must be an object, got {type(config).__name__}")
    schema, fields = _fields(task.actor)
    payload: dict[str, Any] = dict(task.implied)
    inner: dict[str, Any] = {}
    problems: list[str] = []
    items = dict(config)
    if task.nested and isinstance(items.get(task.nested[0]), Mapping):
        items = {**{k: v for k, v in items.items() if k != task.nested[0]}, **items[task.nested[0]]}
    for key, value in items.items():
        rule = task.keys.get(key, key if key in fields or (task.nested and key in task.nested[1]) else None)
        if isinstance(rule, Gone):
            problems.append(f"{key!r}: {rule.reason}")
            continue
        if rule is None:
            problems.append(f"{key!r}: {task.actor} has no such field (it takes {', '.join(sorted(fields))})")
            continue
        try:
            carried = {rule: value} if isinstance(rule, str) else rule(value)
        except _CannotCarry as exc:
            problems.append(f"{key!r}: {exc}")
            continue
        for name, new in carried.items():
            (inner if task.nested and name in task.nested[1] else payload)[name] = new
    if problems:
        raise LegacyConfigError(f"old {task_name} config cannot be carried to {task.actor}: " + "; ".join(problems))
    if task.nested and inner:
        payload[task.nested[0]] = {**payload.get(task.nested[0], {}), **inner}
    try:
        validated = validate_payload(task.actor, schema, payload)
    except PayloadInvalid as exc:
        raise LegacyConfigError(f"old {task_name} config, translated for {task.actor}: {exc}") from None
    return {"actor": task.actor, "payload": validated.model_dump(mode="json", exclude_unset=True)}
