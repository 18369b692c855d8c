"""Charts drawn on the server with matplotlib, as PNG bytes (no script from elsewhere in the page)."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["best_value_png", "example_signals_png", "training_curve_png"]


def _figure(**kwargs: Any):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(dpi=100, layout="constrained", **kwargs)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def example_signals_png(dataset_path: str, *, samples: int = 2048) -> bytes:
    """One training record per class (up to 6 classes): its first ``samples`` points and its
    spectrum, every channel of a multi-channel dataset drawn in its own colour."""
    import numpy as np

    from pipeline.datasets.hdf5 import read_geometry, read_labels, read_split

    geometry = read_geometry(dataset_path)
    keys, rate = geometry.class_keys, geometry.sampling_rate
    labels = read_labels(dataset_path, "train")
    chosen = [(int(label), int(np.flatnonzero(labels == label)[0])) for label in np.unique(labels)][:6]
    figure = _figure(figsize=(10, 1.9 * max(len(chosen), 1)))
    rows = figure.subplots(max(len(chosen), 1), 2, squeeze=False)
    for (label, index), (wave_axes, spectrum_axes) in zip(chosen, rows):
        record = read_split(dataset_path, "train", slice(index, index + 1)).signals[0]
        for channel, signal in zip(geometry.channels, np.atleast_2d(record)):
            wave_axes.plot(np.arange(samples) / rate * 1000, signal[:samples], linewidth=0.6, label=channel)
            spectrum = np.abs(np.fft.rfft(signal)) / signal.size
            spectrum_axes.semilogy(np.fft.rfftfreq(signal.size, 1 / rate), spectrum + 1e-12, linewidth=0.5)
        wave_axes.set_ylabel(keys[label] if label < len(keys) else str(label))
    if geometry.in_channels > 1:
        rows[0][0].legend(fontsize=7, loc="upper right")
    rows[-1][0].set_xlabel("time (ms)")
    rows[-1][1].set_xlabel("frequency (Hz)")
    rows[0][0].set_title("signal (first samples)")
    rows[0][1].set_title("amplitude spectrum")
    return _png(figure)


def training_curve_png(history: list[dict[str, Any]]) -> bytes:
    """Loss and accuracy per epoch (train and validation) as a PNG; an empty history draws empty axes."""
    from matplotlib.ticker import MaxNLocator

    figure = _figure(figsize=(9, 3.4))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "acc")):
        for split in ("train", "val"):
            values = [row.get(f"{split}_{metric}") for row in history]
            points = [(e, v) for e, v in zip(epochs, values) if v is not None]
            if points:
                axes.plot(*zip(*points), marker="o", label=split)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title("loss" if metric == "loss" else "accuracy")
        axes.grid(alpha=0.3)
        if axes.has_data():
            axes.legend()
    return _png(figure)


def best_value_png(trials: dict[str, dict[str, Any]], *, direction: str, metric: str) -> bytes:
    """A campaign's trial values by trial number, with the best so far as a step line."""
    scored = sorted((int(number), entry["value"]) for number, entry in trials.items()
                    if entry.get("state") == "complete" and entry.get("value") is not None)
    figure = _figure(figsize=(7, 3))
    axes = figure.subplots()
    if scored:
        numbers, values = zip(*scored)
        pick = max if direction == "maximize" else min
        best = [pick(values[: i + 1]) for i in range(len(values))]
        axes.plot(numbers, values, "o", label="trial")
        axes.step(numbers, best, where="post", label="best so far")
        axes.legend()
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("trial")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    return _png(figure)
