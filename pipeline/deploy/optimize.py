"""Optimise a trained model: permanent pruning, then Conv-BN fusion, saved as a checkpoint.

Pruning is per layer (each layer loses ``amount`` of its weights), then made permanent with
``prune.remove`` so the checkpoint holds plain weights with zeros and no masks:

- ``l1_unstructured``: the smallest-magnitude weights of every Conv1d and Linear layer.
- ``random_unstructured``: random weights of the same layers (seeded).
- ``ln_structured``: whole output channels of every Conv1d, by L2 norm.

LSTM and attention in-projection weights are not pruned (``torch.nn.utils.prune`` reaches
them only by parameter name; their recurrent structure makes unstructured zeros useless on
CPU). Fusion comes after pruning: folding multiplies each output channel by a factor, so
zeros stay zeros and the reported sparsity still holds in the fused weights.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from pipeline.deploy._common import accuracy, agreement, check_labels, check_windows, torch_logits
from pipeline.deploy.fusion import count_modules, fuse_conv_bn
from pipeline.deploy.loading import DEPLOY_KEY, load_model
from pipeline.domain import NUM_CLASSES
from pipeline.errors import InvalidInput
from pipeline.models.registry import count_parameters
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.training.checkpoint import save_checkpoint

__all__ = [
    "MAX_PRUNE_AMOUNT",
    "PRUNE_METHODS",
    "OptimizeResult",
    "check_prune_args",
    "optimize_model",
    "prune_model",
    "sparsity",
]

PRUNE_METHODS = ("l1_unstructured", "random_unstructured", "ln_structured")
MAX_PRUNE_AMOUNT = 0.95


@dataclass(frozen=True)
class OptimizeResult:
    """The optimised checkpoint and what pruning and fusion changed."""

    path: str
    prune_method: str | None
    amount: float
    fused: bool
    fused_pairs: int
    modules_before: int
    modules_after: int
    batchnorms_before: int
    batchnorms_after: int
    parameters_before: int
    parameters_after: int
    nonzero_parameters_after: int
    sparsity: float  # zeros among the prunable weights (Conv1d, and Linear when unstructured)
    overall_sparsity: float  # zeros among every parameter
    size_bytes_before: int
    size_bytes_after: int
    compressed_bytes_before: int  # zlib of the checkpoint: what zeros save in storage
    compressed_bytes_after: int
    accuracy_before: float
    accuracy_after: float
    accuracy_change: float
    argmax_agreement: float
    max_abs_diff: float

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values."""
        return asdict(self)


def check_prune_args(method: str | None, amount: float) -> float:
    """Return ``amount`` as a float once ``method`` and ``amount`` are valid.

    Raises:
        InvalidInput: unknown method, or amount not a number in ``[0, MAX_PRUNE_AMOUNT]``.
    """
    if method is not None and method not in PRUNE_METHODS:
        raise InvalidInput(
            f"unknown pruning method {method!r}; valid: {', '.join(PRUNE_METHODS)} or none"
        )
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise InvalidInput(f"pruning amount must be a number, got {amount!r}")
    if not 0.0 <= amount <= MAX_PRUNE_AMOUNT:
        raise InvalidInput(f"pruning amount must be in [0, {MAX_PRUNE_AMOUNT}], got {amount}")
    return float(amount)


def _targets(model: nn.Module, method: str) -> list[nn.Module]:
    kinds = (nn.Conv1d,) if method == "ln_structured" else (nn.Conv1d, nn.Linear)
    return [m for m in model.modules() if isinstance(m, kinds)]


def prune_model(model: nn.Module, method: str, amount: float, seed: int = 0) -> nn.Module:
    """Prune ``model`` in place with ``method`` and make it permanent; return the model."""
    amount = check_prune_args(method, amount)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in _targets(model, method):
            if method == "l1_unstructured":
                prune.l1_unstructured(module, "weight", amount=amount)
            elif method == "random_unstructured":
                prune.random_unstructured(module, "weight", amount=amount)
            else:
                prune.ln_structured(module, "weight", amount=amount, n=2, dim=0)
            prune.remove(module, "weight")
    return model


def sparsity(tensors: list[torch.Tensor]) -> float:
    """Return the fraction of exact zeros over ``tensors``."""
    total = sum(t.numel() for t in tensors)
    zeros = sum(int((t == 0).sum()) for t in tensors)
    return zeros / total if total else 0.0


def _compressed(path: Path) -> int:
    compressor = zlib.compressobj(1)
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            size += len(compressor.compress(chunk))
    return size + len(compressor.flush())


def optimize_model(
    checkpoint: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    val_windows: np.ndarray,
    val_labels: np.ndarray,
    *,
    prune_method: str | None = "l1_unstructured",
    amount: float = 0.3,
    fuse: bool = True,
    seed: int = 0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> OptimizeResult:
    """Prune and/or fuse a checkpoint's model and save it as a new checkpoint.

    The result loads with ``pipeline.deploy.loading.load_model`` (weights only; the fused
    structure is rebuilt from ``extra["deploy"]``) and exports like any checkpoint.

    Raises:
        InvalidInput: bad method, amount, windows or labels, or a dynamically quantised
            input. CheckpointError: missing or unreadable checkpoint.
    """
    amount = check_prune_args(prune_method, amount)
    windows = check_windows(val_windows, "validation windows")
    model, meta = load_model(checkpoint)
    classes = int((meta["model_args"] or {}).get("num_classes", NUM_CLASSES))
    labels = check_labels(val_labels, len(windows), classes)
    deploy = dict((meta["extra"] or {}).get(DEPLOY_KEY) or {})
    if deploy.get("quantization"):
        raise InvalidInput(f"checkpoint {checkpoint} is quantised; optimise the FP32 one")
    before = torch_logits(model, windows)
    modules_before = count_modules(model)
    bn_before = count_modules(model, nn.BatchNorm1d)
    params_before = count_parameters(model)
    check_stop(should_stop)
    on_progress(0.3, "pruning", method=prune_method, amount=amount)
    if prune_method is not None:
        prune_model(model, prune_method, amount, seed)
    pruned: list[torch.Tensor] = []
    if prune_method is not None:
        pruned = [m.weight for m in _targets(model, prune_method)]  # type: ignore[misc]
    target_sparsity = sparsity(pruned)
    check_stop(should_stop)
    on_progress(0.5, "fusing")
    pairs = fuse_conv_bn(model) if fuse else 0
    after = torch_logits(model, windows)
    deploy.update(fused=bool(deploy.get("fused")) or pairs > 0)
    if prune_method is not None:
        deploy.setdefault("pruning", []).append(
            {"method": prune_method, "amount": amount, "seed": seed}
        )
    check_stop(should_stop)
    on_progress(0.8, "saving")
    target = save_checkpoint(
        out_path,
        model,
        meta["model_key"],
        meta["model_args"],
        meta["class_keys"],
        meta["training_config"],
        extra={**(meta["extra"] or {}), DEPLOY_KEY: deploy},
    )
    source = Path(checkpoint)
    acc_before, acc_after = accuracy(before, labels), accuracy(after, labels)
    result = OptimizeResult(
        path=str(target),
        prune_method=prune_method,
        amount=amount,
        fused=bool(deploy["fused"]),
        fused_pairs=pairs,
        modules_before=modules_before,
        modules_after=count_modules(model),
        batchnorms_before=bn_before,
        batchnorms_after=count_modules(model, nn.BatchNorm1d),
        parameters_before=params_before,
        parameters_after=count_parameters(model),
        nonzero_parameters_after=int(sum(int((p != 0).sum()) for p in model.parameters())),
        sparsity=target_sparsity,
        overall_sparsity=sparsity(list(model.parameters())),
        size_bytes_before=source.stat().st_size,
        size_bytes_after=target.stat().st_size,
        compressed_bytes_before=_compressed(source),
        compressed_bytes_after=_compressed(target),
        accuracy_before=acc_before,
        accuracy_after=acc_after,
        accuracy_change=acc_after - acc_before,
        argmax_agreement=agreement(before, after),
        max_abs_diff=float(np.abs(before - after).max()),
    )
    on_progress(1.0, "optimised", sparsity=target_sparsity, accuracy_change=result.accuracy_change)
    return result
