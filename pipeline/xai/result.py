"""What an explanation returns: attributions plus a compact, JSON-ready summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Attribution", "Explanation", "feature_summary", "segment_edges", "segment_summary"]


@dataclass
class Attribution:
    """One method's raw result: per-sample (or per-feature) ``values`` and scalar ``extra``."""

    values: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the values as a list: meant for small arrays and tests)."""
        return {"values": np.asarray(self.values).tolist(), "extra": dict(self.extra)}


@dataclass
class Explanation:
    """An explained prediction.

    ``kind`` is ``"signal"`` (``attributions`` has one value per sample: ``[L]``, or ``[C, L]``
    for a multi-channel window) or ``"features"`` (one value per name in ``feature_names``). ``summary`` holds the top segments
    (``start``, ``end``, ``score`` = sum of attributions inside) or the top features;
    ``extra`` holds method scalars such as ``ig_delta`` or ``shap_base_value``.
    """

    method: str
    model_key: str
    kind: str
    predicted_class: int
    confidence: float
    target_class: int
    attributions: np.ndarray
    summary: dict[str, Any]
    timings_ms: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    probabilities: list[float] = field(default_factory=list)
    feature_names: tuple[str, ...] | None = None

    def to_dict(self, attributions: bool = False) -> dict[str, Any]:
        """The compact record (JSON primitives); the attribution array only when asked."""
        out: dict[str, Any] = {
            "method": self.method,
            "model_key": self.model_key,
            "kind": self.kind,
            "predicted_class": int(self.predicted_class),
            "confidence": float(self.confidence),
            "target_class": int(self.target_class),
            "probabilities": [float(p) for p in self.probabilities],
            "summary": self.summary,
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
            "extra": self.extra,
            "params": self.params,
            "length": int(np.asarray(self.attributions).shape[-1]),
        }
        if np.ndim(self.attributions) == 2:
            out["channels"] = int(np.shape(self.attributions)[0])
        if self.feature_names is not None:
            out["feature_names"] = list(self.feature_names)
        if attributions:
            out["attributions"] = np.asarray(self.attributions).tolist()
        return out


def segment_edges(length: int, n_segments: int) -> np.ndarray:
    """Boundaries ``[n_segments + 1]`` of equal contiguous segments covering ``length`` samples."""
    return np.linspace(0, length, n_segments + 1).round().astype(np.int64)


def _top(scores: np.ndarray, top_k: int) -> np.ndarray:
    # Ranked by magnitude: a strong negative contribution is as informative as a positive one.
    order = np.argsort(-np.abs(scores), kind="stable")
    return order[: min(top_k, scores.size)]


def segment_summary(attributions: np.ndarray, n_segments: int, top_k: int) -> dict[str, Any]:
    """Rank equal segments by the magnitude of their summed attribution (sign kept).

    A ``[C, L]`` attribution is ranked by time segment over every channel, each top segment
    with its sum per channel (``by_channel``), and ``channel_totals`` say which sensor the
    prediction leaned on.
    """
    values = np.asarray(attributions, dtype=np.float64)
    edges = segment_edges(values.shape[-1], n_segments)
    per_channel = np.add.reduceat(values.reshape(-1, values.shape[-1]), edges[:-1], axis=1)  # [C, S]
    scores = per_channel.sum(axis=0)
    summary: dict[str, Any] = {
        "segments": int(n_segments),
        "total": float(values.sum()),
        "top_segments": [
            {"start": int(edges[i]), "end": int(edges[i + 1]), "score": float(scores[i]),
             **({"by_channel": [float(v) for v in per_channel[:, i]]} if values.ndim == 2 else {})}
            for i in _top(scores, top_k)
        ],
    }
    if values.ndim == 2:
        summary["channel_totals"] = [float(v) for v in values.sum(axis=1)]
    return summary


def feature_summary(attributions: np.ndarray, names: Sequence[str], top_k: int) -> dict[str, Any]:
    """Rank features by the magnitude of their attribution (sign kept)."""
    values = np.asarray(attributions, dtype=np.float64)
    return {
        "total": float(values.sum()),
        "top_features": [
            {"name": str(names[i]), "index": int(i), "score": float(values[i])}
            for i in _top(values, top_k)
        ],
    }
