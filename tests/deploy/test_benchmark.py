"""Benchmark: every kind of variant measured at batch 1/8/32, JSON and PNG written."""

from __future__ import annotations

import json

import pytest

from pipeline.deploy.benchmark import benchmark_variants
from pipeline.deploy.optimize import optimize_model
from pipeline.deploy.quantize import convert_fp16, quantize_static_onnx
from pipeline.errors import InvalidInput, StopRequested


@pytest.fixture(scope="module")
def variants(exported, checkpoints, val, train_windows, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-variants")
    fp32 = exported("cnn1d").path
    int8 = quantize_static_onnx(fp32, out / "int8.onnx", val[0], *val, max_calibration_windows=32)
    fp16 = convert_fp16(fp32, out / "fp16.onnx", *val)
    pruned = optimize_model(checkpoints["cnn1d"], out / "pruned.pt", *val, amount=0.5)
    return [
        ("torch_fp32", "torch", str(checkpoints["cnn1d"])),
        ("onnx_fp32", "onnx", fp32),
        ("onnx_int8", "onnx", int8.path),
        ("onnx_fp16", "onnx", fp16.path),
        ("torch_pruned", "torch", pruned.path),
    ]


def test_benchmark_measures_every_variant_and_writes_json_and_chart(variants, val, tmp_path):
    progress = []
    result = benchmark_variants(
        variants,
        *val,
        tmp_path,
        warmup=1,
        runs=5,
        on_progress=lambda f, s="", **m: progress.append(f),
    )

    assert [v.name for v in result.variants] == [name for name, _, _ in variants]
    for variant in result.variants:
        assert [s.batch_size for s in variant.latency] == [1, 8, 32]
        for stats in variant.latency:  # measured, not compared: no timing assertions
            assert 0 < stats.p50_ms <= stats.p95_ms <= stats.p99_ms and stats.runs == 5
            assert stats.throughput_per_s > 0
        assert variant.size_bytes > 0 and variant.peak_memory_bytes >= 0
        assert 0.0 <= variant.accuracy <= 1.0
    int8 = next(v for v in result.variants if v.name == "onnx_int8")
    assert int8.latency[0].p50_ms > 0
    assert result.variants[1].argmax_agreement == 1.0  # ONNX FP32 against torch FP32
    assert result.memory_method in ("vmhwm", "ru_maxrss")
    assert json.loads((tmp_path / "benchmark.json").read_text()) == result.to_dict()
    assert (tmp_path / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "bad",
    [[("a", "tflite", "x")], [("a", "onnx", "/no/such.onnx")], [], [("a", "onnx")]],
)
def test_benchmark_refuses_bad_variants(bad, val, tmp_path) -> None:
    with pytest.raises(InvalidInput):
        benchmark_variants(bad, *val, tmp_path)


def test_benchmark_refuses_duplicate_names_and_bad_counts(variants, val, tmp_path) -> None:
    with pytest.raises(InvalidInput, match="unique"):
        benchmark_variants([variants[0], variants[0]], *val, tmp_path)
    with pytest.raises(InvalidInput, match="runs"):
        benchmark_variants(variants[:1], *val, tmp_path, runs=0)


def test_benchmark_stops_when_asked(variants, val, tmp_path) -> None:
    with pytest.raises(StopRequested):
        benchmark_variants(variants, *val, tmp_path, should_stop=lambda: True)
    assert not (tmp_path / "benchmark.json").exists()
