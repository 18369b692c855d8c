"""Quantisation: static INT8 calibrated on the dataset's windows, FP16, dynamic INT8."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from torch.ao.nn.quantized import dynamic as qdynamic

from pipeline.datasets.hdf5 import read_windows
from pipeline.deploy import quantize as quantize_module
from pipeline.deploy.export import export_onnx
from pipeline.deploy.loading import load_model
from pipeline.deploy.quantize import (
    WindowCalibrationReader,
    boundary_nodes,
    convert_fp16,
    quantize_dynamic_torch,
    quantize_static_onnx,
)
from pipeline.errors import CheckpointError, InvalidInput
from pipeline.models import DEEP_KEYS
from pipeline.training import SplitData, TrainingData
from pipeline.training.loop import train_deep
from tests.deploy.conftest import LENGTH, TINY_ARGS

# Held-out windows on which INT8 must keep the trained FP32 argmax (issue 6's goal). Measured: 0.9945
# of 2,200 with the boundary in float, 0.9845 with it in INT8 (max |dlogit| 0.07 against 2.7).
AGREEMENT_FLOOR = 0.99


def test_calibration_reader_yields_the_dataset_windows_themselves(train_windows) -> None:
    # Given the training split exactly as read_windows returns it.
    reader = WindowCalibrationReader(train_windows, "signal", batch_size=8, max_windows=20)

    batches = list(reader)

    assert reader.source is train_windows  # the very array, not a copy or noise
    assert len(reader.indices) == 20 and reader.indices[-1] == len(train_windows) - 1
    stacked = np.concatenate([b["signal"] for b in batches])
    assert stacked.shape == (20, 1, train_windows.shape[1])
    np.testing.assert_array_equal(stacked[:, 0], train_windows[reader.indices])
    assert reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(
        reader.get_next()["signal"][:, 0], train_windows[reader.indices[:8]]
    )


def test_static_int8_calibrates_on_the_given_training_windows(
    exported, train_windows, val, tmp_path, monkeypatch
) -> None:
    # Given short windows that are a view of the dataset's training windows.
    calibration = train_windows.reshape(-1, LENGTH)
    assert np.shares_memory(calibration, train_windows)
    seen = []
    real = quantize_module.quantize_static

    def spy(model_input, model_output, reader, **kwargs):
        seen.append((reader, kwargs))
        return real(model_input, model_output, reader, **kwargs)

    monkeypatch.setattr(quantize_module, "quantize_static", spy)
    fp32 = exported("cnn1d")

    result = quantize_static_onnx(
        fp32.path, tmp_path / "int8.onnx", calibration, *val, max_calibration_windows=64
    )

    reader, kwargs = seen[0]
    assert reader.source is calibration and reader.batches_read == 4
    expected = hashlib.sha256(calibration[reader.indices].tobytes()).hexdigest()
    assert result.details["calibration_sha256"] == expected
    assert result.details["calibration_windows"] == 64
    assert kwargs["per_channel"] is True
    graph = onnx.load(result.path).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    weight_scales = [i for i in graph.initializer if i.name.endswith("_scale") and i.dims]
    assert weight_scales and max(i.dims[0] for i in weight_scales) > 1  # per-channel
    assert result.size_bytes < result.reference_size_bytes
    assert 0.0 <= result.argmax_agreement <= 1.0
    json.dumps(result.to_dict())


@pytest.mark.parametrize("key", DEEP_KEYS)
def test_fp16_and_static_int8_convert_every_deep_model(key, exported, val, tmp_path) -> None:
    fp32 = exported(key)

    fp16 = convert_fp16(fp32.path, tmp_path / "fp16.onnx", *val)
    int8 = quantize_static_onnx(
        fp32.path, tmp_path / "int8.onnx", val[0], *val, max_calibration_windows=32
    )

    model = onnx.load(fp16.path)
    onnx.checker.check_model(model, full_check=True)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert fp16.size_ratio < 0.95 and fp16.argmax_agreement >= 0.95
    assert fp16.max_abs_diff < 0.05
    assert np.isfinite(int8.max_abs_diff) and int8.details["calibration_batches"] == 2


def test_dynamic_int8_quantizes_lstm_and_linear_and_reloads(checkpoints, val, tmp_path) -> None:
    result = quantize_dynamic_torch(checkpoints["cnn_lstm"], tmp_path / "dyn.pt", *val)

    assert result.method == "dynamic_int8" and result.details["quantized_layers"] == 2
    assert result.size_bytes < result.reference_size_bytes  # INT8 LSTM weights
    assert result.argmax_agreement >= 0.95
    model, meta = load_model(result.path)
    assert meta["extra"]["deploy"]["quantization"] == "dynamic_int8"
    assert isinstance(model.lstm, qdynamic.LSTM) and isinstance(model.head[1], qdynamic.Linear)
    json.dumps(result.to_dict())


def test_dynamic_int8_keeps_the_transformer_encoder_in_float(checkpoints, val, tmp_path):
    result = quantize_dynamic_torch(checkpoints["signal_transformer"], tmp_path / "d.pt", *val)

    assert result.details["quantized_layers"] == 1  # the head only; the encoder would break


def test_quantisation_inputs_are_checked(val, tmp_path) -> None:
    with pytest.raises(CheckpointError):
        quantize_dynamic_torch(tmp_path / "missing.pt", tmp_path / "d.pt", *val)
    with pytest.raises(InvalidInput, match="not found"):
        quantize_static_onnx(tmp_path / "missing.onnx", tmp_path / "q.onnx", val[0], *val)
    with pytest.raises(InvalidInput, match="not found"):
        convert_fp16(tmp_path / "missing.onnx", tmp_path / "h.onnx", *val)
    with pytest.raises(InvalidInput, match="calibration windows"):
        WindowCalibrationReader(np.zeros((0, 1024), np.float32), "signal")


def test_windows_of_another_length_than_the_model_are_refused(exported, val, tmp_path) -> None:
    fp32 = exported("cnn1d").path
    long_windows = np.zeros((4, 2 * LENGTH), np.float32)

    with pytest.raises(InvalidInput, match="calibration windows hold 2048 samples"):
        quantize_static_onnx(fp32, tmp_path / "q.onnx", long_windows, *val)
    with pytest.raises(InvalidInput, match="validation windows hold 2048"):
        convert_fp16(fp32, tmp_path / "h.onnx", long_windows, np.zeros(4, np.int64))


def _dequantized(graph: onnx.GraphProto) -> set[str]:
    return {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}


@pytest.mark.parametrize("key", DEEP_KEYS)
def test_the_boundary_is_the_layer_on_the_signal_and_the_classifier(key, exported) -> None:
    graph = onnx.load(exported(key).path).graph
    nodes = {n.name: n for n in graph.node}

    boundary = [nodes[name] for name in boundary_nodes(graph)]

    assert [n.op_type for n in boundary] == ["Conv", "Gemm"]
    assert "signal" in boundary[0].input and "logits" in boundary[1].output


def test_static_int8_keeps_the_boundary_in_float_unless_asked(exported, val, tmp_path) -> None:
    fp32 = exported("cnn1d").path
    kept = quantize_static_onnx(
        fp32, tmp_path / "kept.onnx", val[0], *val, max_calibration_windows=32
    )
    quantized = quantize_static_onnx(
        fp32, tmp_path / "all.onnx", val[0], *val, max_calibration_windows=32, float_boundary=False
    )

    graph, all_int8 = onnx.load(kept.path).graph, onnx.load(quantized.path).graph
    assert kept.details["float_boundary"] == boundary_nodes(onnx.load(fp32).graph)
    for node in (n for n in graph.node if n.name in kept.details["float_boundary"]):
        assert not _dequantized(graph).intersection(node.input[:2])  # float input and weights
    assert quantized.details["float_boundary"] == []
    stem = next(n for n in all_int8.node if n.op_type == "Conv")
    assert _dequantized(all_int8).issuperset(stem.input[:2])


def _short_split(dataset, split: str) -> SplitData:
    windows, labels, records = read_windows(dataset, split)
    per = windows.shape[1] // LENGTH
    return SplitData(windows.reshape(-1, LENGTH), np.repeat(labels, per), np.repeat(records, per))


@pytest.mark.slow
def test_static_int8_keeps_the_argmax_of_a_trained_model(dataset, tmp_path) -> None:
    # Given a tiny cnn1d trained a few epochs on the dataset's short windows (seeded, one thread).
    train, val, test = (_short_split(dataset, split) for split in ("train", "val", "test"))
    data = TrainingData(train, val, test)
    config = {"epochs": 4, "batch_size": 32, "lr": 3e-3, "scheduler": "none", "device": "cpu"}
    trained = train_deep("cnn1d", TINY_ARGS["cnn1d"], config, data, tmp_path / "train")
    fp32 = export_onnx(trained.model_path, tmp_path / "fp32.onnx", data.val.windows)
    held_out = np.concatenate([data.val.windows, data.test.windows])
    labels = np.concatenate([data.val.labels, data.test.labels])

    # When it is quantised, calibrated on the training windows, and compared on held-out ones.
    int8 = quantize_static_onnx(
        fp32.path, tmp_path / "int8.onnx", data.train.windows, held_out, labels
    )

    # Then it learnt something, and INT8 keeps FP32's answer on nearly every window.
    assert int8.accuracy_reference > 0.4  # 11 classes: chance is 0.09; it reaches 0.59
    assert int8.argmax_agreement >= AGREEMENT_FLOOR, int8.argmax_agreement
