"""Short real training of one NAS candidate with the training pipeline's parts, scored on validation.

``train_deep`` builds models from the registry by key, which a sampled architecture is not,
so candidates train here with the same pieces: ``TrainingConfig``, its optimizer, scheduler
and device, the same batch order (``iterate_batches``) and ``predict_split``. A candidate's
run is short, so it keeps no checkpoint: a redelivered candidate trains again from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.nas.model import build_candidate
from pipeline.nas.profile import profile_model
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.training import optim
from pipeline.training.config import TrainingConfig
from pipeline.training.data import TrainingData, iterate_batches
from pipeline.training.loop import predict_split

__all__ = ["CandidateResult", "train_candidate"]


@dataclass(frozen=True)
class CandidateResult:
    """A trained candidate: best validation accuracy, the loss at that epoch, its cost, its epochs."""

    val_accuracy: float
    val_loss: float
    best_epoch: int
    epochs_run: int
    parameter_count: int
    macs: int
    flops: int
    latency_ms: float
    size_bytes: int
    history: list[dict[str, float]]

    def metrics(self) -> dict[str, Any]:
        """Return everything but the history, as JSON."""
        data = asdict(self)
        data.pop("history")
        return data


def train_candidate(
    arch: dict[str, Any],
    training: dict[str, Any],
    data: TrainingData,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> CandidateResult:
    """Build ``arch``, profile it, train it for ``training['epochs']`` and score each epoch on validation.

    ``on_epoch(epoch, val_accuracy, val_loss)`` may raise to end the run (a pruner).

    Raises:
        InvalidInput: a bad architecture, training option or data.
        StopRequested: ``should_stop()`` answered true.
    """
    config = TrainingConfig.from_dict(training)
    data.validate()
    device = optim.resolve_device(config)
    torch.manual_seed(config.seed)
    model = build_candidate(arch, len(data.class_keys), data.in_channels)
    profile = profile_model(model, length=data.train.window_shape[-1])
    model = model.to(device)
    optimizer = optim.make_optimizer(model, config)
    scheduler = optim.make_scheduler(optimizer, config)
    history: list[dict[str, float]] = []
    best = {"val_acc": -1.0, "val_loss": float("inf"), "epoch": 0}
    for epoch in range(1, config.epochs + 1):
        check_stop(should_stop)
        model.train()
        batches = iterate_batches(data.train, config.batch_size, shuffle=True, seed=config.seed * 100_003 + epoch,
                                  device=str(device), drop_single=True)
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        probs = predict_split(model, data.val, config.batch_size, device)
        labels = data.val.labels
        val_loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())
        val_acc = float((probs.argmax(1) == labels).mean())
        optim.step_scheduler(scheduler, val_acc)
        history.append({"epoch": epoch, "val_acc": val_acc, "val_loss": val_loss})
        if val_acc > best["val_acc"] or (val_acc == best["val_acc"] and val_loss < best["val_loss"]):
            best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch}
        on_progress(epoch / config.epochs, f"epoch {epoch}/{config.epochs}", val_acc=val_acc, val_loss=val_loss)
        if on_epoch is not None:
            on_epoch(epoch, val_acc, val_loss)
    return CandidateResult(
        val_accuracy=best["val_acc"], val_loss=best["val_loss"], best_epoch=int(best["epoch"]),
        epochs_run=len(history), history=history, **{k: v for k, v in profile.to_dict().items()},
    )
