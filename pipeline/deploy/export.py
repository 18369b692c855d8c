"""Export a checkpoint to ONNX with a dynamic batch axis, then prove it matches torch.

Opset choice (measured with torch 2.13 + onnxscript 0.7, onnx 1.23, onnxruntime 1.32 on all
five deep models):

- The default exporter (dynamo, ``torch.export`` based) implements opset 18 and writes 20
  by default. Asked for 17 it runs the ONNX version converter, which fails for four of the
  five models (a long error on stderr) and silently leaves them at opset 18: 17 is *not*
  handled cleanly, so the default is the exporter's own, ``DEFAULT_OPSET = 20``.
  ONNX Runtime runs 18..25 with max |Δ| <= 4e-7; from 26 the converter emits a
  GroupNormalization that ``onnx.checker`` rejects. Torch declares 23 as its maximum.
- Opsets 13..17 are still offered, through torch's TorchScript exporter (``dynamo=False``,
  deprecated but present in 2.13), which writes them natively with the same parity
  (``signal_transformer`` needs 14: its attention has no opset-13 form, which the exporter
  names in its ``ConversionError``).
- Below 13 the four convolutional models export too (9..12, parity 3e-8), but the
  deployment's static INT8 variant then cannot be made: its per-channel scales sit on
  QuantizeLinear/DequantizeLinear, which take an ``axis`` only from opset 13 (ONNX Runtime
  rejects the quantised model: "Unrecognized attribute: axis"). So they are refused, with
  that reason (``OPSET_FLOOR_REASON``).

So the supported opsets are 13..23; anything else is ``InvalidInput``.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from pipeline.artifacts import atomic_path, file_sha256
from pipeline.deploy._common import (
    INPUT_NAME,
    OUTPUT_NAME,
    agreement,
    as_model_input,
    check_windows,
    onnx_logits,
    ort_session,
    torch_logits,
)
from pipeline.deploy.loading import load_model
from pipeline.errors import ConversionError, InvalidInput, ParityError
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress

__all__ = [
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MIN_OPSET",
    "OPSET_FLOOR_REASON",
    "PARITY_TOLERANCE",
    "ExportResult",
    "export_model",
    "export_onnx",
    "model_metadata",
    "read_model_metadata",
    "resolve_opset",
    "select_windows",
    "verify_parity",
]

DEFAULT_OPSET = 20
MIN_OPSET = 13
MAX_OPSET = 23
OPSET_FLOOR_REASON = (
    "opsets below 13 cannot carry the static INT8 variant's per-channel scales (QuantizeLinear/"
    "DequantizeLinear take an axis from opset 13 on); export at 13..23"
)
_TORCHSCRIPT_MAX_OPSET = 17  # below the dynamo exporter's own opset set (18+)
PARITY_TOLERANCE = 1e-4
MAX_VERIFY_WINDOWS = 256


@dataclass(frozen=True)
class ExportResult:
    """An ONNX file and the proof that it computes what the torch model computes."""

    path: str
    size_bytes: int
    sha256: str
    opset: int
    exporter: str  # "dynamo" or "torchscript"
    input_name: str
    output_name: str
    window_length: int
    verified_windows: int
    max_abs_diff: float
    argmax_agreement: float
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values."""
        return asdict(self)


def resolve_opset(opset: int | None) -> int:
    """Return the opset to export at (``DEFAULT_OPSET`` for None).

    Raises:
        InvalidInput: not an int in ``[MIN_OPSET, MAX_OPSET]``.
    """
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise InvalidInput(f"opset must be an integer, got {opset!r}")
    if opset < MIN_OPSET:
        raise InvalidInput(f"unsupported opset {opset}: {OPSET_FLOOR_REASON}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InvalidInput(
            f"unsupported opset {opset}: supported {MIN_OPSET}..{MAX_OPSET} "
            f"(default {DEFAULT_OPSET})"
        )
    return opset


def select_windows(windows: np.ndarray, limit: int) -> np.ndarray:
    """Return at most ``limit`` windows spread evenly over the array (every class, when the
    split is stored class by class)."""
    if len(windows) <= limit:
        return windows
    return windows[np.linspace(0, len(windows) - 1, limit).round().astype(np.int64)]


def _to_proto(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    with warnings.catch_warnings():
        # Tracer and deprecation chatter; parity below is what decides.
        warnings.simplefilter("ignore")
        if opset <= _TORCHSCRIPT_MAX_OPSET:
            buffer = io.BytesIO()
            # The TorchScript exporter writes to a file object too (typed as a path only).
            torch.onnx.export(
                model,
                (example,),
                buffer,  # type: ignore[arg-type]
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
            return onnx.load_from_string(buffer.getvalue())
        program = torch.onnx.export(
            model,
            (example,),
            None,
            dynamo=True,
            opset_version=opset,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
        if program is None:  # only with an output path, never here
            raise RuntimeError("the exporter returned no program")
        return program.model_proto


def verify_parity(
    model: nn.Module,
    onnx_path: str | os.PathLike[str],
    windows: np.ndarray,
    tolerance: float = PARITY_TOLERANCE,
    batch_size: int = 32,
) -> tuple[float, float]:
    """Return ``(max |Δ logits|, argmax agreement)`` of ONNX Runtime against torch.

    Raises:
        ParityError: the difference exceeds ``tolerance``, an argmax differs, or either side
            is not finite. The error's ``details`` dict carries the numbers.
    """
    expected = torch_logits(model, windows, batch_size)
    got = onnx_logits(ort_session(onnx_path), windows, batch_size)
    finite = bool(np.isfinite(expected).all() and np.isfinite(got).all())
    diff = float(np.abs(expected - got).max()) if finite else float("inf")
    agree = agreement(expected, got)
    if not finite or diff > tolerance or agree < 1.0:
        error = ParityError(
            f"ONNX output differs from torch: max |Δ logits| = {diff:.3g} "
            f"(tolerance {tolerance:.3g}), argmax agreement {agree:.4f} "
            f"on {len(windows)} windows"
        )
        error.details = {  # type: ignore[attr-defined]
            "max_abs_diff": diff if finite else None,  # JSON has no infinity
            "argmax_agreement": agree,
            "tolerance": tolerance,
            "windows": len(windows),
            "finite": finite,
        }
        raise error
    return diff, agree


def export_model(
    model: nn.Module,
    out_path: str | os.PathLike[str],
    windows: np.ndarray,
    *,
    opset: int | None = None,
    tolerance: float = PARITY_TOLERANCE,
    max_windows: int = MAX_VERIFY_WINDOWS,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    metadata: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Export an eval-mode ``model`` to ``out_path`` and verify it on ``windows``.

    ``metadata`` goes into the model's ``metadata_props`` as JSON text under each key (see
    ``model_metadata``). The file appears under ``out_path`` only once ``onnx.checker`` and
    the parity check have passed. Raises ``InvalidInput`` (opset, windows),
    ``ConversionError`` (the exporter or the checker failed) or ``ParityError``.
    """
    opset = resolve_opset(opset)
    windows = select_windows(check_windows(windows), max_windows)
    model = model.eval()
    # A batch of two: with one, torch.export would specialise the batch axis to 1.
    example = torch.from_numpy(np.ascontiguousarray(as_model_input(windows[np.arange(2) % len(windows)])))
    check_stop(should_stop)
    on_progress(0.05, "exporting", opset=opset)
    try:
        proto = _to_proto(model, example, opset)
        onnx.checker.check_model(proto, full_check=True)
    except (RuntimeError, ValueError, TypeError, onnx.checker.ValidationError) as exc:
        # The exporter's own message runs to pages (graph dumps); the cause keeps it all.
        summary = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"ONNX export at opset {opset} failed: {summary}") from exc
    written = _main_opset(proto)
    if written != opset:
        raise ConversionError(f"asked for opset {opset}, the exporter wrote {written}")
    onnx.helper.set_model_props(proto, {k: json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()})
    target = Path(out_path)
    with atomic_path(target) as tmp:
        onnx.save_model(proto, tmp)  # weights inline: one self-contained file
        check_stop(should_stop)
        on_progress(0.6, "verifying", windows=len(windows))
        diff, agree = verify_parity(model, tmp, windows, tolerance)
    on_progress(1.0, "exported", max_abs_diff=diff)
    return ExportResult(
        path=str(target),
        size_bytes=target.stat().st_size,
        sha256=file_sha256(target),
        opset=opset,
        exporter="torchscript" if opset <= _TORCHSCRIPT_MAX_OPSET else "dynamo",
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        window_length=int(windows.shape[-1]),
        verified_windows=len(windows),
        max_abs_diff=diff,
        argmax_agreement=agree,
        tolerance=tolerance,
    )


def _main_opset(proto: onnx.ModelProto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    windows: np.ndarray,
    *,
    opset: int | None = None,
    tolerance: float = PARITY_TOLERANCE,
    max_windows: int = MAX_VERIFY_WINDOWS,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> ExportResult:
    """Export a checkpoint (plain or optimised) to ONNX, verified on real ``windows``.

    Args:
        checkpoint: a training or ``optimize_model`` checkpoint.
        out_path: the ONNX file to write (atomically, weights inline).
        windows: float32 ``[n, L]`` windows from the dataset (e.g. the validation split);
            ``L`` becomes the model's fixed input length, the batch axis stays dynamic.
        opset: ``None`` for ``DEFAULT_OPSET``, else ``MIN_OPSET..MAX_OPSET``.
        tolerance: the largest max |Δ logits| accepted.
        max_windows: verify on at most this many windows (spread over the split).

    Raises:
        InvalidInput: bad opset or windows. CheckpointError: missing or unreadable checkpoint.
        ConversionError: the exporter or ``onnx.checker`` failed. ParityError: see
        ``verify_parity``.
    """
    resolve_opset(opset)  # refuse a bad opset before loading anything
    check_windows(windows)
    model, meta = load_model(checkpoint)
    return export_model(
        model,
        out_path,
        windows,
        opset=opset,
        tolerance=tolerance,
        max_windows=max_windows,
        on_progress=on_progress,
        should_stop=should_stop,
        metadata=model_metadata(meta),
    )


def model_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a consumer of the ONNX file needs besides the graph: the classes its outputs are,
    in order (``pfd.class_keys``), and the data the model was trained on (``pfd.data``: sampling
    rate, channels, window length and hop, normalisation, input shape), so raw recordings can be
    prepared exactly as in training (``pipeline.deploy.preprocess``)."""
    data = (meta.get("extra") or {}).get("data")
    return {"pfd.model_key": meta["model_key"], "pfd.class_keys": list(meta["class_keys"]),
            **({"pfd.data": data} if data else {})}


def read_model_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``pfd.*`` metadata of an exported ONNX file, decoded (``model_metadata``)."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in proto.metadata_props if p.key.startswith("pfd.")}
