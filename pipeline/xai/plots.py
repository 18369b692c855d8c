"""PNG figures of explanations (matplotlib object API on an Agg canvas, no pyplot).

No pyplot: no global backend is chosen at import, nothing needs a display, and no figure
outlives its function (pyplot keeps figures alive until closed: a leak in a worker).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.artifacts import atomic_path
from pipeline.domain import CLASS_KEYS, FS
from pipeline.errors import InvalidInput
from pipeline.xai.result import Explanation

__all__ = ["mean_abs_attribution_by_class", "plot_class_mean_attribution", "plot_explanation", "save_figure"]

_MAX_COLUMNS = 256  # time bins of the class heat map: one 1 s window -> 80-sample bins
# Columns a signal figure draws its traces with: about two per pixel of its axes (1,000 px
# wide). Drawing all 20,480 samples looked the same and took 60 % of an explanation's time.
_TRACE_BINS = 2048


def _extremes(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Each bin's minimum and maximum, in time order: a trace that draws as the full one."""
    if values.size <= 2 * bins:
        return np.arange(values.size, dtype=np.float64), values
    edges = np.linspace(0, values.size, bins + 1).round().astype(np.int64)
    lows, highs = np.minimum.reduceat(values, edges[:-1]), np.maximum.reduceat(values, edges[:-1])
    # Which extreme comes first in its bin: the first sample equal to it, found without a loop.
    bin_of = np.repeat(np.arange(bins), np.diff(edges))
    index = np.arange(values.size)
    first_low = (np.minimum.reduceat(np.where(values == lows[bin_of], index, values.size), edges[:-1])
                 < np.minimum.reduceat(np.where(values == highs[bin_of], index, values.size), edges[:-1]))
    pairs = np.where(first_low[:, None], np.column_stack([lows, highs]), np.column_stack([highs, lows]))
    positions = np.repeat((edges[:-1] + edges[1:] - 1) / 2, 2)
    return positions, pairs.reshape(-1)


def _strongest(values: np.ndarray, bins: int) -> np.ndarray:
    """The value of largest magnitude in each bin (sign kept): a colour band that hides no peak."""
    if values.size <= bins:
        return values
    edges = np.linspace(0, values.size, bins + 1).round().astype(np.int64)
    highs, lows = np.maximum.reduceat(values, edges[:-1]), np.minimum.reduceat(values, edges[:-1])
    return np.where(np.abs(highs) >= np.abs(lows), highs, lows)


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Render ``figure`` on an Agg canvas and write it as a PNG at ``path``, atomically."""
    target = Path(path)
    FigureCanvasAgg(figure)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return target


def _label(cls: int | str, class_keys: Sequence[str]) -> str:
    if isinstance(cls, (int, np.integer)) and 0 <= int(cls) < len(class_keys):
        return class_keys[int(cls)]
    return str(cls)


def _signal_figure(figure: Figure, window: np.ndarray, e: Explanation, fs: float,
                   channel_names: Sequence[str]) -> None:
    """One panel per channel (the signal over its attribution as a colour band), then the
    attribution traces; ``window`` and the attributions are ``[C, L]``."""
    values = np.asarray(e.attributions, dtype=np.float64).reshape(window.shape)
    t = np.arange(window.shape[-1]) / fs
    axes = figure.subplots(len(window) + 1, 1, sharex=True, height_ratios=[3] * len(window) + [2])
    tops, bottom = axes[:-1], axes[-1]
    scale = float(np.max(np.abs(values))) or 1.0  # one scale: channels are compared
    signed = bool((values < 0).any())
    for top, signal, attribution, name in zip(tops, window, values, channel_names):
        lo, hi = float(np.min(signal)), float(np.max(signal))
        pad = 0.05 * ((hi - lo) or 1.0)
        # The attribution as a colour band behind the signal: where the model looked.
        top.imshow(
            _strongest(attribution, _TRACE_BINS)[None, :],
            aspect="auto",
            extent=(t[0], t[-1], lo - pad, hi + pad),
            cmap="coolwarm" if signed else "Reds",
            vmin=-scale if signed else 0.0,
            vmax=scale,
            alpha=0.7,
            interpolation="nearest",
        )
        at, trace = _extremes(signal, _TRACE_BINS)
        top.plot(at / fs, trace, color="black", linewidth=0.5)
        top.set_ylabel(name)
    for attribution, name in zip(values, channel_names):
        at, trace = _extremes(attribution, _TRACE_BINS)
        bottom.plot(at / fs, trace, linewidth=0.6, label=name,
                    color="tab:red" if len(values) == 1 else None)
    if len(values) > 1:
        bottom.legend(fontsize=7, loc="upper right")
    bottom.axhline(0.0, color="grey", linewidth=0.5)
    for segment in e.summary.get("top_segments", []):
        bottom.axvspan(segment["start"] / fs, segment["end"] / fs, color="gold", alpha=0.3)
    for edge in e.extra.get("window_edges", [])[1:]:  # a stitched record: where each window begins
        for ax in axes:
            ax.axvline(edge / fs, color="grey", linewidth=0.8, linestyle="--")
    bottom.set_ylabel("attribution")
    bottom.set_xlabel("time (s)")


def _feature_figure(figure: Figure, e: Explanation, top_n: int) -> None:
    values = np.asarray(e.attributions, dtype=np.float64)
    names = e.feature_names or tuple(str(i) for i in range(values.size))
    # Features the model never sees (dropped by selection) have exactly 0: leave them out.
    order = [i for i in np.argsort(-np.abs(values), kind="stable") if values[i] != 0][:top_n][::-1]
    ax = figure.subplots()
    ax.barh(
        [names[i] for i in order],
        values[order],
        color=["tab:red" if values[i] >= 0 else "tab:blue" for i in order],
    )
    ax.axvline(0.0, color="grey", linewidth=0.5)
    ax.set_xlabel("attribution (red: towards the class)")
    ax.tick_params(axis="y", labelsize=8)


def plot_explanation(
    path: str | os.PathLike[str],
    window: np.ndarray,
    explanation: Explanation,
    class_keys: Sequence[str] = CLASS_KEYS,
    fs: float = FS,
    top_features: int = 15,
    channel_names: Sequence[str] | None = None,
) -> Path:
    """Draw the signal with its attribution overlaid (top segments shaded), a panel per
    channel of a ``[C, L]`` window (named by ``channel_names``), or a bar chart of the
    ``top_features`` feature attributions; write a PNG atomically.

    Raises:
        InvalidInput: a signal explanation whose shape differs from ``window``'s.
    """
    e = explanation
    if e.kind == "signal":
        window = np.asarray(window, dtype=np.float64)
        window = window.reshape(-1, window.shape[-1])
        if window.size != np.asarray(e.attributions).size:
            raise InvalidInput(
                f"window has {window.size} samples, explanation {np.asarray(e.attributions).size}"
            )
        names = list(channel_names or ([f"channel {k}" for k in range(len(window))] if len(window) > 1
                                       else ["amplitude"]))
        # Fixed margins: the layout engine cost a third of the figure's time (an extra draw).
        figure = Figure(figsize=(10, 5 + 2.5 * (len(window) - 1)))
        figure.subplots_adjust(left=0.1, right=0.98, bottom=0.1, top=0.9, hspace=0.08)
        _signal_figure(figure, window, e, fs, names)
    else:
        figure = Figure(figsize=(7, max(3.0, 0.3 * top_features + 1)), layout="constrained")
        _feature_figure(figure, e, top_features)
    figure.suptitle(
        f"{e.method} · predicted {_label(e.predicted_class, class_keys)} ({e.confidence:.0%}) · "
        f"explained {_label(e.target_class, class_keys)}"
    )
    return save_figure(figure, path)


def mean_abs_attribution_by_class(
    items: Iterable[tuple[int | str, np.ndarray]],
) -> dict[int | str, np.ndarray]:
    """Mean absolute attribution per class from ``(class, attributions)`` pairs; a
    multi-channel signal attribution ``[C, L]`` counts as its channels' summed magnitude.

    Raises:
        InvalidInput: attributions of one class differ in length.
    """
    sums: dict[int | str, np.ndarray] = {}
    counts: dict[int | str, int] = {}
    for cls, values in items:
        values = np.asarray(values, dtype=np.float64)
        magnitude = np.abs(values).sum(axis=0) if values.ndim == 2 else np.abs(values.reshape(-1))
        if cls in sums and sums[cls].shape != magnitude.shape:
            raise InvalidInput(f"attributions of class {cls!r} differ in length")
        sums[cls] = sums.get(cls, 0.0) + magnitude
        counts[cls] = counts.get(cls, 0) + 1
    return {cls: sums[cls] / counts[cls] for cls in sums}


def plot_class_mean_attribution(
    path: str | os.PathLike[str],
    per_class_mean: Mapping[int | str, np.ndarray],
    feature_names: Sequence[str] | None = None,
    class_keys: Sequence[str] = CLASS_KEYS,
    fs: float = FS,
) -> Path:
    """Heat map of the batch aggregate: one row per class, columns time bins or features.

    Each row is scaled to its own maximum (classes are compared by where, not how much).
    Arrays of 36 values are taken as the 36 features unless ``feature_names`` says otherwise.

    Raises:
        InvalidInput: nothing to draw, or arrays of different lengths.
    """
    if not per_class_mean:
        raise InvalidInput("plot_class_mean_attribution needs at least one class")
    rows = [np.abs(np.asarray(v, dtype=np.float64).reshape(-1)) for v in per_class_mean.values()]
    length = rows[0].size
    if any(r.size != length for r in rows) or length == 0:
        raise InvalidInput("per-class attributions must all have the same, non-zero length")
    if feature_names is None:
        from pipeline.features import FEATURE_NAMES

        feature_names = FEATURE_NAMES if length == len(FEATURE_NAMES) else None
    matrix = np.vstack(rows)
    if feature_names is None and length > _MAX_COLUMNS:
        edges = np.linspace(0, length, _MAX_COLUMNS + 1).round().astype(np.int64)
        matrix = np.add.reduceat(matrix, edges[:-1], axis=1) / np.diff(edges)
    matrix = matrix / np.maximum(matrix.max(axis=1, keepdims=True), 1e-300)
    labels = [_label(c, class_keys) for c in per_class_mean]
    figure = Figure(figsize=(11, 1.5 + 0.35 * len(labels)), layout="constrained")
    ax = figure.subplots()
    if feature_names is not None:
        image = ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(length), list(feature_names), rotation=90, fontsize=7)
    else:
        image = ax.imshow(
            matrix,
            aspect="auto",
            cmap="viridis",
            interpolation="nearest",
            extent=(0.0, length / fs, len(labels) - 0.5, -0.5),
        )
        ax.set_xlabel("time (s)")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("mean |attribution| per class (each row scaled to its maximum)")
    figure.colorbar(image, ax=ax, fraction=0.02)
    return save_figure(figure, path)
