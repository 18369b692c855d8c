"""Checkpoint files: a model's weights plus everything needed to rebuild it, never pickle.

A checkpoint is a dict of JSON-like values and tensors written with ``torch.save`` and read
with ``torch.load(weights_only=True)``, which refuses any pickled object that is not a
tensor or a plain container. Files are written to a temporary name and renamed, so a
crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.artifacts import atomic_file
from pipeline.errors import CheckpointError
from pipeline.models.registry import DEEP_KEYS, SEARCHED_KEYS, build_model
from pipeline.training.config import TrainingConfig

__all__ = [
    "FORMAT",
    "atomic_save",
    "capture_rng",
    "load_checkpoint",
    "load_training_state",
    "restore_rng",
    "safe_load",
    "save_checkpoint",
    "save_training_state",
    "snapshot_state",
]

FORMAT = "pfd-checkpoint/1"
# Config fields a resumed run may change (where it runs, not what it learns).
_RESUME_MAY_DIFFER = frozenset({"device", "num_workers", "mixed_precision", "precision"})


def snapshot_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return a detached CPU copy of ``model``'s state dict (later training cannot change it)."""
    return {
        name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()
    }


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to a temporary file beside ``path``, then rename it over ``path``."""
    target = Path(path)
    with atomic_file(target) as handle:
        torch.save(obj, handle)
    return target


def safe_load(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a file written by ``atomic_save`` with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, truncated, not a torch file, not a dict, or
            holds a pickled object other than tensors and plain containers.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint not found: {source}")
    try:
        data = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {source} holds objects that are not allowed: {exc}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint {source} is corrupt or not a checkpoint: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {source} does not hold a dict")
    return data


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | Mapping[str, torch.Tensor],
    model_key: str,
    model_args: dict[str, Any],
    class_keys: tuple[str, ...] | list[str],
    training_config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a self-describing checkpoint (weights from a module or a state dict) atomically."""
    state = snapshot_state(model) if isinstance(model, nn.Module) else dict(model)
    payload = {
        "format": FORMAT,
        "model_key": model_key,
        "model_args": dict(model_args),
        "class_keys": list(class_keys),
        "training_config": dict(training_config),
        "extra": dict(extra or {}),
        "state_dict": state,
    }
    return atomic_save(payload, path)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint, load its weights, and return ``(model.eval(), meta)``.

    ``meta`` holds ``model_key``, ``model_args``, ``class_keys``, ``training_config`` and
    ``extra``.

    Raises:
        CheckpointError: missing/corrupt file, disallowed objects, unknown format or model,
            or weights that do not fit the model.
    """
    data = safe_load(path, map_location)
    if data.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {data.get('format')!r}, expected {FORMAT!r}"
        )
    key = data.get("model_key")
    if key not in DEEP_KEYS + SEARCHED_KEYS:
        raise CheckpointError(f"checkpoint {path} names unknown deep model {key!r}")
    try:
        model = build_model(key, data.get("model_args"))
        model.load_state_dict(data["state_dict"], strict=True)
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit model {key!r}: {exc}") from exc
    meta = {
        name: data[name]
        for name in ("model_key", "model_args", "class_keys", "training_config", "extra")
    }
    return model.to(map_location).eval(), meta


def capture_rng() -> dict[str, Any]:
    """Return the python, numpy and torch RNG states as checkpoint-safe values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the RNG states captured by ``capture_rng``."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(
    path: str | os.PathLike[str],
    identity: dict[str, Any],
    counters: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    ema: nn.Module | None = None,
) -> Path:
    """Write ``last.pt``: the run's identity (model key, args, config), counters, history,
    and the model, optimizer, scheduler, scaler, weight average (if any) and RNG states."""
    state = {**identity, **counters, "model": snapshot_state(model), "rng": capture_rng()}
    state["ema"] = snapshot_state(ema) if ema is not None else None
    state["optimizer"], state["scaler"] = optimizer.state_dict(), scaler.state_dict()
    state["scheduler"] = scheduler.state_dict() if scheduler is not None else None
    return atomic_save(state, path)


def load_training_state(
    path: str | os.PathLike[str],
    identity: dict[str, Any],
    device: torch.device,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    keys: tuple[str, ...],
    ema: nn.Module | None = None,
) -> dict[str, Any]:
    """Restore a ``last.pt`` into the given objects and the RNGs; return its counters ``keys``.

    Raises:
        CheckpointError: unreadable file, or one written for another model, arguments or
            training config (device, workers and mixed precision may differ).
    """
    saved = safe_load(path, device)

    def strip(config: dict[str, Any] | None) -> dict[str, Any]:
        # Options added since a file was written read as their defaults.
        full = {**TrainingConfig().to_dict(), **(config or {})}
        return {k: v for k, v in full.items() if k not in _RESUME_MAY_DIFFER}

    mine = (identity["model_key"], identity["model_args"], strip(identity["config"]))
    if (saved.get("model_key"), saved.get("model_args"), strip(saved.get("config"))) != mine:
        raise CheckpointError(
            f"{path} belongs to another training run (model {saved.get('model_key')!r}); "
            "use a fresh checkpoint directory"
        )
    try:
        model.load_state_dict(saved["model"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        if saved["scaler"]:  # empty when the interrupted run had no mixed precision
            scaler.load_state_dict(saved["scaler"])
        restore_rng(saved["rng"])
        return {name: saved[name] for name in keys}
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot resume from {path}: {exc}") from exc
