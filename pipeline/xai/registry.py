"""Explanation methods, their parameters, defaults and ranges, and validation of a request.

Importing this module is cheap (no torch, shap or lime): the actor validates a request
before it loads anything, and a refused request fails at once, never retried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain import WINDOW_LENGTH
from pipeline.errors import InvalidInput, MethodNotApplicable

__all__ = ["METHODS", "MethodSpec", "Param", "params_digest", "validate_method_params"]


@dataclass(frozen=True)
class Param:
    """One method parameter: its type, default and inclusive range (or allowed values)."""

    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    help: str = ""


@dataclass(frozen=True)
class MethodSpec:
    """A method: what it explains (deep and/or classical models) and its parameters."""

    name: str
    summary: str
    deep: bool
    classical: bool
    params: Mapping[str, Param] = field(default_factory=dict)


def _int(default: int, low: int, high: int, help: str) -> Param:
    return Param(int, default, low, high, help=help)


# Upper bounds keep one request from asking for hours of work or gigabytes of memory.
_TOP_K = _int(5, 1, 1000, "segments or features listed in the summary")
_SEED = _int(0, 0, 2**31 - 1, "seed of every random draw (same seed, same explanation)")
_BATCH = _int(32, 1, 4096, "windows per forward/backward pass")
_BACKGROUND = _int(100, 1, 10_000, "training windows in the background / reference set")
_SUMMARY_SEGMENTS = _int(32, 2, WINDOW_LENGTH, "equal segments the summary ranks (≤ signal length)")
_N_SEGMENTS = _int(32, 2, WINDOW_LENGTH, "contiguous equal segments (≤ signal length)")
_OFF = Param(
    str,
    "mean",
    choices=("mean", "zero"),
    help="an 'off' segment is replaced by its own mean (keeps the offset) or by zeros",
)

METHODS: dict[str, MethodSpec] = {
    "shap": MethodSpec(
        "shap",
        "deep: expected gradients (shap.GradientExplainer's estimand, stratified) over a "
        "background of training windows, repeated until additive within a tolerance; "
        "classical: TreeExplainer on tree ensembles, else KernelExplainer",
        deep=True,
        classical=True,
        params={
            "background_size": _BACKGROUND,
            "n_samples": _int(200, 1, 100_000, "gradient samples a pass (deep) or kernel samples"),
            "tolerance": Param(
                float,
                0.05,
                0.0,
                1.0,
                help="deep: repeat passes until |f(x) - base - sum| / |f(x) - base| is at most this",
            ),
            "max_samples": _int(3000, 1, 100_000, "deep: gradient samples over all passes at most"),
            "batch_size": _BATCH,
            "summary_segments": _SUMMARY_SEGMENTS,
            "top_k": _TOP_K,
            "seed": _SEED,
        },
    ),
    "lime": MethodSpec(
        "lime",
        "deep: LIME over contiguous signal segments; classical: lime_tabular on the features",
        deep=True,
        classical=True,
        params={
            "n_segments": _N_SEGMENTS,
            "n_samples": _int(1000, 10, 100_000, "perturbed samples"),
            "off": _OFF,
            "kernel_width": Param(
                float,
                0.0,
                0.0,
                100.0,
                help="LIME kernel width; 0: lime's own default (0.25 on segment masks as "
                "lime_image, 0.75·sqrt(features) on tabular features)",
            ),
            "background_size": _BACKGROUND,
            "batch_size": _BATCH,
            "top_k": _TOP_K,
            "seed": _SEED,
        },
    ),
    "integrated_gradients": MethodSpec(
        "integrated_gradients",
        "Integrated Gradients from a zero baseline (Gauss-Legendre), with completeness delta",
        deep=True,
        classical=False,
        params={
            "n_steps": _int(64, 1, 10_000, "integration points on the path"),
            "batch_size": _int(16, 1, 4096, "path points per forward/backward pass"),
            "summary_segments": _SUMMARY_SEGMENTS,
            "top_k": _TOP_K,
        },
    ),
    "gradcam": MethodSpec(
        "gradcam",
        "Grad-CAM on the last Conv1d layer (or the one named), upsampled to the signal length",
        deep=True,
        classical=False,
        params={
            "layer": Param(str, "", help="module name of a Conv1d; empty: the last one"),
            "summary_segments": _SUMMARY_SEGMENTS,
            "top_k": _TOP_K,
        },
    ),
    "kernel_shap": MethodSpec(
        "kernel_shap",
        "model-agnostic shap.KernelExplainer over contiguous signal segments (any model)",
        deep=True,
        classical=True,
        params={
            "n_segments": _N_SEGMENTS,
            "n_samples": _int(512, 1, 100_000, "coalitions evaluated"),
            "off": _OFF,
            "batch_size": _BATCH,
            "top_k": _TOP_K,
            "seed": _SEED,
        },
    ),
    "activations": MethodSpec(
        "activations",
        "activation maps: the output of every Conv1d (or of those named) for the signal, one "
        "heat map per layer; no class is explained",
        deep=True,
        classical=False,
        params={
            "layers": Param(str, "", help="comma-separated Conv1d module names; empty: every Conv1d"),
            "max_channels": _int(16, 1, 1024, "channels drawn per layer (the most active)"),
        },
    ),
}


def _check(method: str, name: str, spec: Param, value: Any, signal_length: int) -> Any:
    where = f"parameter {name!r} of method {method!r}"
    if spec.kind is str:
        if not isinstance(value, str):
            raise InvalidInput(f"{where} must be a string, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise InvalidInput(f"{where} must be one of {', '.join(spec.choices)}, got {value!r}")
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.kind is int and not (number and float(value).is_integer()):
        raise InvalidInput(f"{where} must be an integer, got {value!r}")
    if spec.kind is float and not number:
        raise InvalidInput(f"{where} must be a number, got {value!r}")
    value = spec.kind(value)
    high = spec.high
    if name in ("n_segments", "summary_segments"):
        high = min(high or signal_length, signal_length)
    if (spec.low is not None and value < spec.low) or (high is not None and value > high):
        raise InvalidInput(f"{where} must be in [{spec.low:g}, {high:g}], got {value!r}")
    return value


def validate_method_params(
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    model_key: str | None = None,
    signal_length: int = WINDOW_LENGTH,
) -> dict[str, Any]:
    """Check a request and return its parameters completed with the defaults.

    Args:
        method: a key of ``METHODS``.
        params: the caller's parameters (JSON primitives); missing ones take defaults.
        model_key: when given, the method must apply to that model (deep or classical).
        signal_length: the window length, bounding ``n_segments`` and ``summary_segments``.

    Raises:
        InvalidInput: unknown method or parameter, wrong type, value out of range.
        MethodNotApplicable: the method cannot explain ``model_key``'s kind of model.
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown explanation method {method!r}; valid: {', '.join(METHODS)}")
    spec = METHODS[method]
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) {', '.join(unknown)} for method {method!r}; "
            f"valid: {', '.join(spec.params)}"
        )
    if model_key is not None:
        from pipeline.models.registry import is_deep

        deep = is_deep(model_key)
        if (deep and not spec.deep) or (not deep and not spec.classical):
            kind = "deep" if deep else "classical"
            raise MethodNotApplicable(
                f"method {method!r} cannot explain {kind} model {model_key!r}"
            )
    resolved = {
        name: _check(method, name, p, params.get(name, p.default), signal_length)
        for name, p in spec.params.items()
    }
    # Kernel SHAP solves a regression over the segments: fewer coalitions than unknowns
    # gives a singular system and meaningless values.
    if method == "kernel_shap" and resolved["n_samples"] < resolved["n_segments"] + 2:
        raise InvalidInput(
            f"parameter 'n_samples' of method 'kernel_shap' must be at least n_segments + 2 "
            f"({resolved['n_segments'] + 2}), got {resolved['n_samples']}"
        )
    return resolved


def params_digest(method: str, resolved: Mapping[str, Any]) -> str:
    """Return a short stable hash of a method and its resolved parameters (an idempotency key)."""
    text = json.dumps({"method": method, "params": dict(resolved)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
