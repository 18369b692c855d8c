"""Activation maps: what each convolutional layer of a deep model computes for one signal.

Not an attribution (no class is explained): every ``Conv1d`` output (or the ones named) is
captured in one forward pass, kept as ``[channels, time]``, saved as an ``.npz`` and drawn
as one heat map per layer under the signal, channels ordered by mean activity.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import atomic_file
from pipeline.domain import CLASS_KEYS, FS
from pipeline.errors import MethodNotApplicable
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress

__all__ = ["ActivationMaps", "activation_maps", "plot_activation_maps", "save_activation_maps"]


@dataclass(frozen=True)
class ActivationMaps:
    """Per-layer activations ``[channels, time]`` of one window, and the model's prediction."""

    layers: dict[str, np.ndarray]
    probabilities: list[float]
    predicted_class: int
    model_key: str

    def to_dict(self) -> dict[str, Any]:
        """The compact record (no arrays): per layer its shape and activity, and the prediction."""
        return {
            "method": "activations",
            "kind": "activations",
            "model_key": self.model_key,
            "predicted_class": self.predicted_class,
            "confidence": float(self.probabilities[self.predicted_class]),
            "probabilities": self.probabilities,
            "layers": [
                {"name": name, "channels": int(a.shape[0]), "length": int(a.shape[1]),
                 "mean_abs": float(np.abs(a).mean()), "max": float(a.max()),
                 "active_fraction": float((a > 0).mean())}
                for name, a in self.layers.items()
            ],
        }


def activation_maps(
    model: Any,
    window: np.ndarray,
    model_key: str,
    layers: str = "",
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> ActivationMaps:
    """Capture the output of every ``Conv1d`` (or of those named in ``layers``, comma-separated)
    for one window ``[L]`` (or ``[C, L]`` of a multi-channel model) in a single forward pass.

    Raises:
        MethodNotApplicable: the model has no Conv1d, or a named layer is not one of them.
        InvalidInput: the window has other channels than the model takes.
    """
    import torch
    from torch import nn

    from pipeline.xai.deep import check_channels

    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv1d)}
    if not convs:
        raise MethodNotApplicable(f"model {model_key!r} has no Conv1d layer: it has no activation maps")
    wanted = [name.strip() for name in layers.split(",") if name.strip()] or list(convs)
    unknown = [name for name in wanted if name not in convs]
    if unknown:
        raise MethodNotApplicable(f"layer(s) {', '.join(unknown)} are not Conv1d layers of this model; "
                                  f"Conv1d layers: {', '.join(convs)}")
    check_stop(should_stop)
    owner = threading.get_ident()
    captured: dict[str, np.ndarray] = {}

    def hook_for(name: str):  # type: ignore[no-untyped-def]
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if threading.get_ident() == owner:  # another thread's forward on a shared cached model
                captured[name] = output.detach()[0].float().cpu().numpy()
        return hook

    handles = [convs[name].register_forward_hook(hook_for(name)) for name in wanted]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    signal = np.ascontiguousarray(window, dtype=np.float32)
    check_channels(model, signal)
    x = torch.as_tensor(signal, device=device).reshape(1, signal.shape[0] if signal.ndim == 2 else 1, -1)
    try:
        with torch.no_grad():
            logits = model(x)[0].double().cpu().numpy()
    finally:
        for handle in handles:
            handle.remove()
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    on_progress(1.0, "activations captured", layers=len(wanted))
    return ActivationMaps({name: captured[name] for name in wanted}, [float(p) for p in probs],
                          int(np.argmax(probs)), model_key)


def save_activation_maps(path: str | os.PathLike[str], maps: ActivationMaps) -> Path:
    """Write the maps (float32, one array per layer, in order) and their record to an ``.npz``, atomically."""
    target = Path(path)
    arrays = {f"layer_{i}": a.astype(np.float32) for i, a in enumerate(maps.layers.values())}
    with atomic_file(target) as handle:
        np.savez_compressed(handle, record=np.array(json.dumps(maps.to_dict())), **arrays)
    return target


def plot_activation_maps(
    path: str | os.PathLike[str], window: np.ndarray, maps: ActivationMaps, class_keys: list[str] | tuple[str, ...] =
    CLASS_KEYS, fs: float = FS, max_channels: int = 16, channel_names: Sequence[str] | None = None,
) -> Path:
    """Draw the signal (each channel of a ``[C, L]`` window), then one heat map per layer: the
    ``max_channels`` most active channels (mean |activation|) against time, on the signal's
    time axis; write a PNG atomically."""
    from matplotlib.figure import Figure

    from pipeline.xai.plots import save_figure

    signals = np.asarray(window, dtype=np.float64).reshape(-1, np.shape(window)[-1])
    length = signals.shape[-1]
    duration = length / fs
    figure = Figure(figsize=(10, 1.6 * (len(maps.layers) + 1)), layout="constrained")
    axes = figure.subplots(len(maps.layers) + 1, 1, sharex=True, squeeze=False)[:, 0]
    step = max(1, length // 4096)  # a trace as wide as the figure's pixels, no wider
    for k, signal in enumerate(signals):
        axes[0].plot(np.arange(0, length, step) / fs, signal[::step], linewidth=0.5,
                     color="black" if len(signals) == 1 else None,
                     label=channel_names[k] if channel_names else f"channel {k}")
    if len(signals) > 1:
        axes[0].legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("signal")
    for ax, (name, activations) in zip(axes[1:], maps.layers.items()):
        order = np.argsort(-np.abs(activations).mean(axis=1), kind="stable")[:max_channels]
        ax.imshow(activations[order], aspect="auto", cmap="viridis", interpolation="nearest",
                  extent=(0.0, duration, len(order), 0))
        ax.set_ylabel(f"{name}\n{activations.shape[0]} ch", fontsize=7)
    axes[-1].set_xlabel("time (s)")
    label = class_keys[maps.predicted_class] if maps.predicted_class < len(class_keys) else maps.predicted_class
    figure.suptitle(f"activation maps · predicted {label} ({maps.probabilities[maps.predicted_class]:.0%})")
    return save_figure(figure, path)
