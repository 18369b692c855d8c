"""What every deployment stage shares: input checks, batched inference, simple metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import InvalidInput

if TYPE_CHECKING:
    import onnxruntime
    from torch import nn

__all__ = [
    "INPUT_NAME",
    "MIN_LENGTH",
    "OUTPUT_NAME",
    "accuracy",
    "agreement",
    "as_model_input",
    "check_input_length",
    "check_labels",
    "check_windows",
    "file_size",
    "is_float16",
    "onnx_logits",
    "ort_session",
    "torch_logits",
]

INPUT_NAME = "signal"
OUTPUT_NAME = "logits"
MIN_LENGTH = 512  # the shortest window every architecture accepts


def check_windows(windows: Any, name: str = "windows") -> np.ndarray:
    """Return ``windows`` as C-contiguous float32 ``[n > 0, L]`` or ``[n > 0, C, L]`` (the same
    object if it is one).

    Raises:
        InvalidInput: wrong shape, too short, empty, or NaN/infinite samples.
    """
    array = np.ascontiguousarray(windows, dtype=np.float32)
    if array.ndim not in (2, 3) or array.shape[0] == 0 or array.shape[-1] < MIN_LENGTH:
        raise InvalidInput(
            f"{name} must be [n > 0, L >= {MIN_LENGTH}] or [n > 0, C, L] samples, got shape "
            f"{array.shape}"
        )
    if not np.isfinite(array).all():
        raise InvalidInput(f"{name} hold NaN or infinite samples")
    return array


def check_labels(labels: Any, n: int, num_classes: int, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as int64 ``[n]`` in ``[0, num_classes)`` (raises ``InvalidInput``)."""
    array = np.asarray(labels)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise InvalidInput(f"{name} must be {n} integers, got shape {array.shape} ({array.dtype})")
    if n and (array.min() < 0 or array.max() >= num_classes):
        raise InvalidInput(f"{name} lie outside [0, {num_classes})")
    return array.astype(np.int64, copy=False)


def check_input_length(
    session: onnxruntime.InferenceSession, windows: np.ndarray, name: str = "windows"
) -> None:
    """Raise ``InvalidInput`` unless ``windows`` have the ONNX model's fixed input length."""
    length = session.get_inputs()[0].shape[-1]
    if isinstance(length, int) and windows.shape[-1] != length:
        raise InvalidInput(
            f"{name} hold {windows.shape[-1]} samples, the model takes {length} per window"
        )


def as_model_input(windows: np.ndarray) -> np.ndarray:
    """Windows as a model takes them, ``[n, C, L]``: one-channel ``[n, L]`` gain their channel axis."""
    return windows[:, None, :] if windows.ndim == 2 else windows


def torch_logits(model: nn.Module, windows: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Return the float32 logits ``[n, C]`` of ``model`` (eval mode, no grad) on ``windows``."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(as_model_input(windows[start : start + batch_size])))
            out.append(model(batch).float().numpy())
    return np.concatenate(out)


def is_float16(path: str | os.PathLike[str]) -> bool:
    """Return true when an ONNX file holds float16 weights."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def ort_session(path: str | os.PathLike[str], threads: int = 1) -> onnxruntime.InferenceSession:
    """Open an ONNX Runtime CPU session with every graph optimisation and ``threads`` threads.

    For FP16 models the NCHWc layout transformer is disabled: with it, onnxruntime 1.32
    segfaults while opening an FP16 ``signal_transformer`` (seen here; FP32 unaffected).
    Open every ONNX model of this project through this function.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: CPU fallbacks of FP16 nodes are expected
    disabled = ["NchwcTransformer"] if is_float16(path) else None
    return ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
    )


def onnx_logits(
    session: onnxruntime.InferenceSession, windows: np.ndarray, batch_size: int = 32
) -> np.ndarray:
    """Return the float32 logits ``[n, C]`` of an ONNX session on ``windows``."""
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: np.ascontiguousarray(as_model_input(windows[start : start + batch_size]))})[0]
        for start in range(0, len(windows), batch_size)
    ]
    return np.concatenate(out).astype(np.float32, copy=False)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Return the fraction of windows whose argmax is their label."""
    return float((logits.argmax(axis=1) == labels).mean())


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Return the fraction of windows on which two sets of logits agree on the argmax."""
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def file_size(path: str | os.PathLike[str]) -> int:
    """Return a file's size in bytes."""
    return Path(path).stat().st_size
