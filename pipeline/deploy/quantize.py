"""Quantise a model three ways, each judged against FP32 on the validation windows.

- ``quantize_dynamic_torch``: torch dynamic INT8 of the Linear and LSTM layers (weights
  INT8, activations quantised on the fly). The checkpoint keeps the FP32 weights plus a
  flag (see ``pipeline.deploy.loading``); ``int8_state_bytes`` is the quantised state's
  serialised size.
- ``quantize_static_onnx``: ONNX Runtime static INT8 in QDQ format, per-channel weights,
  calibrated (MinMax) on real training windows through ``WindowCalibrationReader``.
  Activations are uint8 and weights int8 (U8S8): on an AVX-512 VNNI CPU it ran ResNet18
  2.6 ms per window against 6.5 ms for S8S8 and 10 ms for FP32 (on AVX2 without VNNI,
  about half as fast). The model's boundary stays float (``float_boundary``): the layer
  that reads the raw signal and the classifier that writes the logits. In uint8 the raw
  signal's calibrated range (impulses reach +-1.3 while the median sample is 0.1) leaves a
  typical window about ten levels, and weak fault signatures are lost. On the trained cnn1d
  of ``bench/bench_deploy.py`` the boundary in INT8 moved logits by up to 0.55 and one
  argmax of 275, in float by 0.025 and none; on the tiny model of the tests, 98.5 % against
  99.5 % agreement. It costs ResNet18 about 11 % of its INT8 latency. Percentile or Entropy
  calibration, more calibration windows and S8S8 did not help (tried on a cnn1d trained alike).
- ``convert_fp16``: FP16 weights and compute through ``onnxruntime.transformers.float16``
  (the converter that onnxconverter-common ships, bundled with onnxruntime; the package
  itself is not installed), with float32 inputs and outputs kept so callers do not change.
  Its inserted casts are topologically sorted with ``onnx_ir`` so ``onnx.checker`` passes.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from pipeline.artifacts import atomic_path
from pipeline.deploy._common import (
    accuracy,
    agreement,
    as_model_input,
    check_input_length,
    check_labels,
    check_windows,
    file_size,
    onnx_logits,
    ort_session,
    torch_logits,
)
from pipeline.deploy.loading import DEPLOY_KEY, DYNAMIC_INT8, apply_dynamic_int8, load_model
from pipeline.domain import NUM_CLASSES
from pipeline.errors import ConversionError, InvalidInput
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress, scaled
from pipeline.training.checkpoint import save_checkpoint

__all__ = [
    "QuantizeResult",
    "WindowCalibrationReader",
    "boundary_nodes",
    "convert_fp16",
    "quantize_dynamic_torch",
    "quantize_static_onnx",
]

MAX_CALIBRATION_WINDOWS = 256
# Kept in float: normalisation and softmax are precision-sensitive, their 1-D scale vectors
# have no channel axis for per-channel scales, and they cost little next to Conv/MatMul.
KEEP_FLOAT = frozenset({"LayerNormalization", "InstanceNormalization", "Softmax"})
# The weighted ops whose inputs and weights ONNX Runtime quantises; at the model's boundary
# (reading the graph input, writing a graph output) they stay float with ``float_boundary``.
WEIGHTED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class QuantizeResult:
    """A quantised model and how it compares with its FP32 reference."""

    method: str  # "dynamic_int8", "static_int8" or "fp16"
    path: str
    size_bytes: int
    reference_size_bytes: int
    size_ratio: float
    accuracy_reference: float
    accuracy: float
    accuracy_change: float
    argmax_agreement: float
    max_abs_diff: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values."""
        return asdict(self)


class WindowCalibrationReader(CalibrationDataReader):
    """Feeds ONNX Runtime's calibration with rows of a given window array, in batches.

    ``source`` is the array passed in (the same object when it already is C-contiguous
    float32, as ``read_windows`` returns it); ``indices`` are the rows used, spread evenly
    over it. Each batch is ``source[indices[i:i + batch_size]]`` as ``[b, 1, L]``, so no
    sample is ever made up. ``fingerprint`` is the SHA-256 of those rows.
    """

    def __init__(
        self,
        windows: np.ndarray,
        input_name: str,
        batch_size: int = 16,
        max_windows: int = MAX_CALIBRATION_WINDOWS,
        should_stop: StopFn = never_stop,
        on_batch: ProgressFn = no_progress,
    ) -> None:
        if batch_size < 1 or max_windows < 1:
            raise InvalidInput("calibration batch size and window count must be >= 1")
        self.source = check_windows(windows, "calibration windows")
        self.input_name = input_name
        self.batch_size = batch_size
        n = len(self.source)
        self.indices = (
            np.arange(n)
            if n <= max_windows
            else np.linspace(0, n - 1, max_windows).round().astype(np.int64)
        )
        self.batches_read = 0
        self._position = 0
        self._should_stop = should_stop
        self._on_batch = on_batch

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Return the next batch as ``{input_name: [b, 1, L]}``, or None when done."""
        check_stop(self._should_stop)
        if self._position >= len(self.indices):
            return None
        rows = self.indices[self._position : self._position + self.batch_size]
        self._position += len(rows)
        self.batches_read += 1
        self._on_batch(self._position / len(self.indices), "calibrating")
        return {self.input_name: np.ascontiguousarray(as_model_input(self.source[rows]))}

    def __len__(self) -> int:
        """Return the number of batches in one pass."""
        return math.ceil(len(self.indices) / self.batch_size)

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._position = 0

    def fingerprint(self) -> str:
        """Return the SHA-256 of the calibration rows (identifies the data used)."""
        return hashlib.sha256(self.source[self.indices].tobytes()).hexdigest()


def _compare(
    method: str,
    path: Path,
    reference_size: int,
    ref: np.ndarray,
    got: np.ndarray,
    labels: np.ndarray,
    size: int | None = None,
    details: dict[str, Any] | None = None,
) -> QuantizeResult:
    size = file_size(path) if size is None else size
    acc_ref, acc = accuracy(ref, labels), accuracy(got, labels)
    return QuantizeResult(
        method=method,
        path=str(path),
        size_bytes=size,
        reference_size_bytes=reference_size,
        size_ratio=size / reference_size,
        accuracy_reference=acc_ref,
        accuracy=acc,
        accuracy_change=acc - acc_ref,
        argmax_agreement=agreement(ref, got),
        max_abs_diff=float(np.abs(ref - got).max()),
        details=details or {},
    )


def boundary_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of the weighted nodes that read a graph input or write a graph output.

    In every deep model here these are the first convolution (on the raw signal) and the
    classifier (the logits).
    """
    inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    return [
        n.name
        for n in graph.node
        if n.op_type in WEIGHTED
        and (inputs.intersection(n.input) or outputs.intersection(n.output))
    ]


def _validation(windows: Any, labels: Any, classes: int = NUM_CLASSES) -> tuple[np.ndarray, ...]:
    windows = check_windows(windows, "validation windows")
    return windows, check_labels(labels, len(windows), classes)


def quantize_dynamic_torch(
    checkpoint: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    val_windows: np.ndarray,
    val_labels: np.ndarray,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> QuantizeResult:
    """Dynamically quantise a checkpoint's Linear/LSTM layers to INT8 and save the result.

    Raises:
        InvalidInput: bad windows or labels, or an already quantised checkpoint.
        CheckpointError: missing or unreadable checkpoint.
    """
    windows, labels = _validation(val_windows, val_labels)
    model, meta = load_model(checkpoint)
    deploy = dict((meta["extra"] or {}).get(DEPLOY_KEY) or {})
    if deploy.get("quantization"):
        raise InvalidInput(f"checkpoint {checkpoint} is already quantised")
    ref = torch_logits(model, windows)
    check_stop(should_stop)
    on_progress(0.4, "quantising")
    quantized = apply_dynamic_int8(copy.deepcopy(model))
    got = torch_logits(quantized, windows)
    kinds = (torch.ao.nn.quantized.dynamic.Linear, torch.ao.nn.quantized.dynamic.LSTM)
    layers = sum(isinstance(m, kinds) for m in quantized.modules())
    buffer = io.BytesIO()
    torch.save(quantized.state_dict(), buffer)  # in memory only: it holds packed objects
    target = save_checkpoint(
        out_path,
        model,
        meta["model_key"],
        meta["model_args"],
        meta["class_keys"],
        meta["training_config"],
        extra={**(meta["extra"] or {}), DEPLOY_KEY: {**deploy, "quantization": DYNAMIC_INT8}},
    )
    on_progress(1.0, "quantised")
    return _compare(
        DYNAMIC_INT8,
        target,
        file_size(checkpoint),
        ref,
        got,
        labels,
        size=len(buffer.getbuffer()),
        details={"quantized_layers": layers, "checkpoint_bytes": file_size(target)},
    )


def quantize_static_onnx(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration_windows: np.ndarray,
    val_windows: np.ndarray,
    val_labels: np.ndarray,
    *,
    per_channel: bool = True,
    float_boundary: bool = True,
    max_calibration_windows: int = MAX_CALIBRATION_WINDOWS,
    batch_size: int = 16,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> QuantizeResult:
    """Quantise an FP32 ONNX model to static INT8 (QDQ), calibrated on real windows.

    Args:
        onnx_path: the FP32 model written by ``export_onnx``.
        out_path: the INT8 ONNX file to write (atomically).
        calibration_windows: float32 ``[n, L]`` windows of the training split.
        val_windows, val_labels: the validation split, to compare INT8 with FP32.
        per_channel: per-output-channel weight scales (Conv, Gemm, MatMul).
        float_boundary: keep the layer on the raw signal and the classifier in float
            (``boundary_nodes``); false quantises them too (smaller, less faithful).
        max_calibration_windows: calibrate on at most this many windows, spread evenly.

    Raises:
        InvalidInput: bad windows or labels, or a missing ONNX file.
        ConversionError: ONNX Runtime could not quantise the model.
    """
    source = Path(onnx_path)
    if not source.is_file():
        raise InvalidInput(f"ONNX model not found: {source}")
    windows, labels = _validation(val_windows, val_labels)
    session = ort_session(source)
    reader = WindowCalibrationReader(
        calibration_windows,
        session.get_inputs()[0].name,
        batch_size,
        max_calibration_windows,
        should_stop,
        scaled(on_progress, 0.1, 0.7),
    )
    check_input_length(session, windows, "validation windows")
    check_input_length(session, reader.source, "calibration windows")
    ref = onnx_logits(session, windows)
    target = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="pfd-quant-") as tmp, atomic_path(target) as out:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            # Shape inference and graph optimisation first, as ONNX Runtime recommends.
            quant_pre_process(source, prepared, skip_symbolic_shape=True)
            # No "CalibMaxIntermediateOutputs": in onnxruntime 1.32 reaching it discards the
            # batches collected so far instead of merging their ranges. MinMax keeps only
            # per-tensor min/max outputs per batch, so memory stays small without it.
            graph = onnx.load(prepared).graph
            boundary = boundary_nodes(graph) if float_boundary else []
            excluded = [n.name for n in graph.node if n.op_type in KEEP_FLOAT] + boundary
            quantize_static(
                prepared,
                out,
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=excluded,
            )
            onnx.checker.check_model(str(out))
        except (RuntimeError, ValueError, KeyError, onnx.checker.ValidationError) as exc:
            raise ConversionError(f"static INT8 quantisation of {source} failed: {exc}") from exc
        check_stop(should_stop)
        on_progress(0.8, "evaluating")
        got = onnx_logits(ort_session(out), windows)
    on_progress(1.0, "quantised")
    details = {
        "format": "QDQ",
        "activations": "uint8",
        "weights": "int8",
        "per_channel": per_channel,
        "calibration_method": "MinMax",
        "kept_float": len(excluded),
        "float_boundary": boundary,
        "calibration_windows": len(reader.indices),
        "calibration_batches": reader.batches_read,
        "calibration_source_shape": list(reader.source.shape),
        "calibration_sha256": reader.fingerprint(),
    }
    return _compare("static_int8", target, file_size(source), ref, got, labels, details=details)


def _float16(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx_ir as ir
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about values clipped to the FP16 range
        converted = convert_float_to_float16(model, keep_io_types=True)
    ir_model = ir.from_proto(converted)
    ir_model.graph.sort()  # the converter appends its input casts after their users
    return ir.to_proto(ir_model)


def convert_fp16(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    val_windows: np.ndarray,
    val_labels: np.ndarray,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> QuantizeResult:
    """Convert an FP32 ONNX model to FP16 (float32 inputs and outputs kept).

    Raises:
        InvalidInput: bad windows or labels, or a missing ONNX file.
        ConversionError: the conversion or ``onnx.checker`` failed.
    """
    source = Path(onnx_path)
    if not source.is_file():
        raise InvalidInput(f"ONNX model not found: {source}")
    windows, labels = _validation(val_windows, val_labels)
    session = ort_session(source)
    check_input_length(session, windows, "validation windows")
    ref = onnx_logits(session, windows)
    check_stop(should_stop)
    on_progress(0.3, "converting")
    target = Path(out_path)
    with atomic_path(target) as out:
        try:
            converted = _float16(onnx.load(source))
            onnx.checker.check_model(converted, full_check=True)
        except (RuntimeError, ValueError, KeyError, onnx.checker.ValidationError) as exc:
            raise ConversionError(f"FP16 conversion of {source} failed: {exc}") from exc
        onnx.save_model(converted, out)
        on_progress(0.7, "evaluating")
        got = onnx_logits(ort_session(out), windows)
    on_progress(1.0, "converted")
    details = {"io_types": "float32", "converter": "onnxruntime.transformers.float16"}
    return _compare("fp16", target, file_size(source), ref, got, labels, details=details)
