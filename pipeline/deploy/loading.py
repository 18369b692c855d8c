"""Load a plain, optimised (pruned and/or fused) or dynamic-INT8 checkpoint as a torch model.

Optimised checkpoints are ordinary ``pfd-checkpoint/1`` files (weights only, never pickle)
whose ``extra["deploy"]`` says how the structure was changed:

- ``fused: true``: the model was built, then ``fuse_conv_bn`` was applied; loading does
  the same to a fresh model before loading the weights, so the state-dict keys match.
- ``quantization: "dynamic_int8"``: the weights are the FP32 ones; loading applies
  ``quantize_dynamic`` to them. Quantised LSTMs pack their weights in TorchScript objects
  that ``torch.load(weights_only=True)`` refuses, and dynamic quantisation is a
  deterministic function of the FP32 weights, so this rebuilds the very same model.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from torch import nn

from pipeline.errors import CheckpointError
from pipeline.models.registry import build_model, is_deep
from pipeline.training.checkpoint import FORMAT, safe_load

__all__ = ["DEPLOY_KEY", "DYNAMIC_INT8", "apply_dynamic_int8", "load_model"]

DEPLOY_KEY = "deploy"
DYNAMIC_INT8 = "dynamic_int8"


def apply_dynamic_int8(model: nn.Module) -> nn.Module:
    """Return ``model`` with its Linear and LSTM layers dynamically quantised to INT8.

    Layers inside a ``TransformerEncoderLayer`` stay FP32: its forward reads
    ``linear1.weight`` as a tensor, which a quantised Linear turns into a method.
    """
    import torch

    encoders = [n for n, m in model.named_modules() if isinstance(m, nn.TransformerEncoderLayer)]
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; it is still what 2.13 ships.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        qconfig = torch.ao.quantization.default_dynamic_qconfig
        spec = {
            name: qconfig
            for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.LSTM))
            and not any(name.startswith(f"{encoder}.") for encoder in encoders)
        }
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of any checkpoint written by training or by ``pipeline.deploy``.

    Returns ``(model in eval mode on CPU, meta)``; meta is as ``load_checkpoint``'s, and
    ``meta["extra"]["deploy"]`` (when present) describes the optimisation applied.

    Raises:
        CheckpointError: missing or corrupt file, unknown format or model, or weights that do
            not fit the structure the checkpoint describes.
    """
    data = safe_load(path)
    if data.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {data.get('format')!r}, expected {FORMAT!r}"
        )
    key = data.get("model_key")
    if not isinstance(key, str) or not is_deep(key):
        raise CheckpointError(f"checkpoint {path} names unknown deep model {key!r}")
    extra = data.get("extra") or {}
    deploy = extra.get(DEPLOY_KEY) or {}
    try:
        model = build_model(key, data.get("model_args")).eval()
        if deploy.get("fused"):
            from pipeline.deploy.fusion import fuse_conv_bn

            fuse_conv_bn(model)
        model.load_state_dict(data["state_dict"], strict=True)
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit model {key!r}: {exc}") from exc
    quantization = deploy.get("quantization")
    if quantization == DYNAMIC_INT8:
        model = apply_dynamic_int8(model)
    elif quantization is not None:
        raise CheckpointError(f"checkpoint {path} names unknown quantization {quantization!r}")
    meta = {
        name: data.get(name)
        for name in ("model_key", "model_args", "class_keys", "training_config", "extra")
    }
    return model.eval(), meta
