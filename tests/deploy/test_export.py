"""ONNX export: parity with torch for every deep model, and loud failure when it breaks."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from pipeline.deploy import export as export_module
from pipeline.deploy._common import onnx_logits, ort_session, torch_logits
from pipeline.deploy.export import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    export_model,
    export_onnx,
    resolve_opset,
)
from pipeline.deploy.loading import load_model
from pipeline.errors import CheckpointError, ConversionError, InvalidInput, ParityError
from pipeline.models import DEEP_KEYS, build_model
from pipeline.models.cnn1d import CNN1D


@pytest.mark.parametrize("key", DEEP_KEYS)
def test_onnx_export_matches_torch_for_each_deep_model(key, exported, checkpoints, val) -> None:
    result = exported(key)

    assert result.opset == DEFAULT_OPSET and result.exporter == "dynamo"
    assert result.max_abs_diff <= 1e-4
    assert result.argmax_agreement == 1.0
    assert result.verified_windows == 256  # capped, spread over the split
    json.dumps(result.to_dict())
    model = onnx.load(result.path)
    onnx.checker.check_model(model, full_check=True)
    assert not model.graph.initializer[0].HasField("data_location")  # weights inline
    # Then the batch axis is dynamic: batches of 1 and 5 match torch too.
    torch_model, _ = load_model(checkpoints[key])
    session = ort_session(result.path)
    for batch in (1, 5):
        windows = val[0][:batch]
        got = onnx_logits(session, windows, batch)
        assert got.shape == (batch, 11)
        np.testing.assert_allclose(got, torch_logits(torch_model, windows), atol=1e-4)


def test_resnet18_with_mean_and_max_pooling_exports_with_parity(val, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", {"base_width": 8, "pool": "avgmax"}).eval()

    result = export_model(model, tmp_path / "avgmax.onnx", val[0])

    assert result.max_abs_diff <= 1e-4 and result.argmax_agreement == 1.0
    ops = {node.op_type for node in onnx.load(result.path).graph.node}
    assert ops & {"ReduceMax", "GlobalMaxPool"}  # the maximum over time is in the graph


def test_default_opset_is_the_dynamo_exporters_own() -> None:
    assert resolve_opset(None) == DEFAULT_OPSET == 20
    assert (MIN_OPSET, MAX_OPSET) == (13, 23)


def test_opset_17_is_written_by_the_torchscript_exporter(checkpoints, val, tmp_path) -> None:
    result = export_onnx(checkpoints["resnet18"], tmp_path / "r17.onnx", val[0], opset=17)

    assert result.opset == 17 and result.exporter == "torchscript"
    assert result.max_abs_diff <= 1e-4
    versions = {o.domain: o.version for o in onnx.load(result.path).opset_import}
    assert versions[""] == 17


def test_opset_13_is_exported_and_the_transformer_is_refused_with_the_missing_operator(checkpoints, val, tmp_path):
    result = export_onnx(checkpoints["cnn1d"], tmp_path / "c13.onnx", val[0], opset=13)
    assert result.opset == 13 and result.exporter == "torchscript" and result.max_abs_diff <= 1e-4
    with pytest.raises(ConversionError, match="scaled_dot_product_attention"):
        export_onnx(checkpoints["signal_transformer"], tmp_path / "t13.onnx", val[0], opset=13)


def test_an_opset_below_13_is_refused_with_the_reason(val, tmp_path) -> None:
    with pytest.raises(InvalidInput, match=r"unsupported opset 11: .*per-channel scales .*axis from opset 13"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "m.onnx", val[0], opset=11)


@pytest.mark.parametrize("opset", [7, 12, 24, 99, "20", 17.0, True])
def test_unsupported_opset_is_refused_before_anything_is_loaded(opset, val, tmp_path) -> None:
    # Given a checkpoint path that does not exist: the opset must be refused first.
    with pytest.raises(InvalidInput, match="opset"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "m.onnx", val[0], opset=opset)
    assert not (tmp_path / "m.onnx").exists()


def test_missing_checkpoint_raises_checkpoint_error(val, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "m.onnx", val[0])


@pytest.mark.parametrize(
    "windows",
    [np.zeros(1024, np.float32), np.zeros((4, 100), np.float32), np.full((2, 1024), np.nan)],
)
def test_bad_verification_windows_are_refused(windows, checkpoints, tmp_path) -> None:
    with pytest.raises(InvalidInput, match="windows"):
        export_onnx(checkpoints["cnn1d"], tmp_path / "m.onnx", windows)


class DriftingCNN(CNN1D):
    """A model whose python-side state is frozen into the graph at export time."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x) + float(self.calls)


def test_model_that_differs_after_export_fails_with_parity_error_and_numbers(val, tmp_path) -> None:
    torch.manual_seed(0)
    model = DriftingCNN(width=8, depth=2).eval()

    with pytest.raises(ParityError, match=r"max \|Δ logits\| = [0-9.]+") as caught:
        export_model(model, tmp_path / "drift.onnx", val[0], max_windows=32)

    details = caught.value.details
    assert details["max_abs_diff"] >= 1.0 and details["tolerance"] == 1e-4
    assert details["windows"] == 32 and 0.0 <= details["argmax_agreement"] <= 1.0
    assert not (tmp_path / "drift.onnx").exists()  # nothing left under the final name


def test_wrongly_exported_op_fails_parity_not_silently(checkpoints, val, tmp_path, monkeypatch):
    # Given an exporter that translates ReLU wrongly (as Sigmoid, still a valid graph).
    real = export_module._to_proto

    def broken(model, example, opset):
        proto = real(model, example, opset)
        for node in proto.graph.node:
            if node.op_type == "Relu":
                node.op_type = "Sigmoid"
        return proto

    monkeypatch.setattr(export_module, "_to_proto", broken)

    with pytest.raises(ParityError) as caught:
        export_onnx(checkpoints["cnn1d"], tmp_path / "bad.onnx", val[0], opset=17)

    assert caught.value.details["max_abs_diff"] > 1e-4
    assert f"{caught.value.details['max_abs_diff']:.3g}" in str(caught.value)
    assert not (tmp_path / "bad.onnx").exists()


class BranchyCNN(CNN1D):
    """A data-dependent Python branch: ``torch.export`` cannot capture it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return -logits if float(x.abs().max()) > 1.0 else logits


def test_data_dependent_branch_is_refused_by_the_default_exporter(val, tmp_path) -> None:
    model = BranchyCNN(width=8, depth=2).eval()

    with pytest.raises(ConversionError, match="opset 20 failed"):
        export_model(model, tmp_path / "branchy.onnx", val[0], max_windows=8)
    assert not (tmp_path / "branchy.onnx").exists()


def test_a_nas_campaigns_winner_exports_with_parity_and_quantizes(val, tmp_path) -> None:
    from pipeline.deploy.quantize import quantize_static_onnx
    from pipeline.domain import CLASS_KEYS
    from pipeline.models import build_model
    from pipeline.training.checkpoint import save_checkpoint

    args = {"stem": 8, "layers": [["conv5", 16], ["maxpool", None], ["sepconv3", 16]]}
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "nas.pt", build_model("nas_net", args).eval(), "nas_net", args, CLASS_KEYS, {})
    result = export_onnx(checkpoint, tmp_path / "nas.onnx", val[0])
    assert result.max_abs_diff <= 1e-4 and result.argmax_agreement == 1.0
    int8 = quantize_static_onnx(result.path, tmp_path / "nas-int8.onnx", val[0], *val, max_calibration_windows=32)
    assert int8.method == "static_int8" and int8.size_ratio < 1.0
    assert 0.0 <= int8.argmax_agreement <= 1.0
    assert int8.details["kept_float"] == 2  # its first convolution and classifier, found in the NAS graph too
