"""Explanations of predictions: SHAP, LIME, Integrated Gradients, Grad-CAM, Kernel SHAP.

Importing the package is cheap: every name below is loaded from its module on first use
(PEP 562), so ``import pipeline.xai`` pulls in neither torch, shap, lime nor matplotlib.

- ``registry``: ``METHODS``, ``validate_method_params``, ``params_digest``;
- ``explanation``: ``explain`` (one window, any method, deep or classical model);
- ``deep`` / ``segments`` / ``classical``: the methods themselves;
- ``result``: ``Explanation``, ``Attribution`` and the summaries;
- ``storage``: ``save_explanation`` / ``load_explanation`` (compressed ``.npz``);
- ``plots``: ``plot_explanation``, ``plot_class_mean_attribution``,
  ``mean_abs_attribution_by_class``;
- ``cache``: ``get_model`` (per-process LRU of loaded models);
- ``selection``: ``stratified_records`` (which records of a split a batch explains);
- ``record``: ``explain_record`` (a whole record: window attributions stitched on one axis);
- ``activations``: ``activation_maps`` and their ``.npz`` and plot (per-layer activations).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "METHODS": "registry",
    "MethodSpec": "registry",
    "Param": "registry",
    "params_digest": "registry",
    "validate_method_params": "registry",
    "Attribution": "result",
    "Explanation": "result",
    "explain": "explanation",
    "save_explanation": "storage",
    "load_explanation": "storage",
    "plot_explanation": "plots",
    "plot_class_mean_attribution": "plots",
    "mean_abs_attribution_by_class": "plots",
    "LoadedModel": "cache",
    "get_model": "cache",
    "stratified_records": "selection",
    "explain_record": "record",
    "ActivationMaps": "activations",
    "activation_maps": "activations",
    "plot_activation_maps": "activations",
    "save_activation_maps": "activations",
}

__all__ = [
    "METHODS",
    "ActivationMaps",
    "Attribution",
    "Explanation",
    "LoadedModel",
    "MethodSpec",
    "Param",
    "activation_maps",
    "explain",
    "explain_record",
    "get_model",
    "load_explanation",
    "mean_abs_attribution_by_class",
    "params_digest",
    "plot_activation_maps",
    "plot_class_mean_attribution",
    "plot_explanation",
    "save_activation_maps",
    "save_explanation",
    "stratified_records",
    "validate_method_params",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.xai' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pipeline.xai.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
