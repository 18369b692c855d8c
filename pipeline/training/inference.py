"""Batched prediction with a trained torch model (shared by training and evaluation)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from torch import nn

__all__ = ["autocast", "predict_proba"]


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """Return autocast to ``precision`` (``bf16``, ``fp16``) on ``device``; ``fp32``: a no-op context.

    Training and prediction take this same path on CPU and CUDA; only the precision differs.
    """
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    windows: np.ndarray,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> np.ndarray:
    """Return softmax probabilities ``[n, C]`` (float64) of ``model`` in eval mode on ``[n, L]``
    or ``[n, C, L]`` windows, computed in ``precision`` (see ``autocast``)."""
    device = torch.device(device)
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    out = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        batch = (batch.unsqueeze(1) if batch.ndim == 2 else batch).to(device)
        with autocast(device, precision):
            logits = model(batch)
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).double().numpy()
