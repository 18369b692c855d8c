"""The four stage actors (``cpu_processing``): export, optimise, quantise, benchmark; each runs through
``run_stage`` in a pipeline or alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from actors.deploy.inputs import split_windows, variant_entry
from actors.deploy.mlflow_registry import track_deployment
from actors.deploy.run_stage import run_stage
from actors.deploy.schemas import (
    BenchmarkModels,
    ExportOnnx,
    ExportOptions,
    OptimizeModel,
    QuantizeModel,
)
from actors.platform.artifact_files import publish
from actors.platform.base import job_actor
from actors.platform.context import JobContext
from actors.record_files import variant_file
from actors.store.db import get_database
from config.settings import get_settings
from pipeline.errors import InvalidInput
from pipeline.progress import scaled

__all__ = ["benchmark_models", "export_onnx", "optimize_model", "quantize_model"]

log = structlog.get_logger("pfd.deploy")

# Quantisation method -> (variant name, kind, file name).
QUANTIZED = {"dynamic_int8": ("torch_dynamic_int8", "torch", "dynamic_int8.pt"),
             "static_int8": ("onnx_static_int8", "onnx", "static_int8.onnx"), "fp16": ("onnx_fp16", "onnx", "fp16.onnx")}
# A variant is recommended only if it keeps the reference's argmax on this share of the test windows.
MIN_AGREEMENT = 0.99


def _export(experiment: dict, folder: Path, options: ExportOptions, on_progress: Any,
            should_stop: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Export the experiment's checkpoint to ``folder/model.onnx``; return its variant entry and metrics."""
    from pipeline.deploy.export import export_onnx as export

    result = export(experiment["model_file"], folder / "model.onnx", split_windows(experiment, "val")[0],
                    opset=options.opset, tolerance=options.tolerance, max_windows=options.max_windows,
                    on_progress=on_progress, should_stop=should_stop).to_dict()
    metrics = {k: v for k, v in result.items() if k not in ("path", "sha256", "size_bytes")}
    return variant_entry("onnx_fp32", "onnx", result["path"], metrics, result["sha256"]), metrics


@job_actor(schema=ExportOnnx)
def export_onnx(payload: Any, job: JobContext, *piped: Any) -> dict | None:
    """Export the experiment's checkpoint to ONNX, verified against torch on validation windows."""

    def work(experiment: dict, deployment: dict, folder: Path):  # type: ignore[no-untyped-def]
        variant, metrics = _export(experiment, folder, payload, job.progress, job.should_stop)
        return [variant], metrics, {}

    return run_stage("export", payload, job, piped, work)


@job_actor(schema=OptimizeModel)
def optimize_model(payload: Any, job: JobContext, *piped: Any) -> dict | None:
    """Prune (made permanent) and fuse Conv-BN; report sparsity, size and the validation accuracy change."""
    from pipeline.deploy.optimize import optimize_model as optimize

    def work(experiment: dict, deployment: dict, folder: Path):  # type: ignore[no-untyped-def]
        windows, labels = split_windows(experiment, "val", payload.max_windows)
        result = optimize(experiment["model_file"], folder / "optimized.pt", windows, labels,
                          prune_method=payload.prune_method, amount=payload.amount, fuse=payload.fuse, seed=payload.seed,
                          on_progress=job.progress, should_stop=job.should_stop).to_dict()
        name = "torch_pruned" if payload.prune_method else "torch_fused"
        brief = {k: result[k] for k in ("sparsity", "fused_pairs", "modules_before", "modules_after", "accuracy_change")}
        metrics = {k: v for k, v in result.items() if k != "path"}
        return [variant_entry(name, "torch", result["path"], metrics)], {"variant": name, **brief}, {}

    return run_stage("optimize", payload, job, piped, work)


@job_actor(schema=QuantizeModel)
def quantize_model(payload: Any, job: JobContext, *piped: Any) -> dict | None:
    """Dynamic INT8 (torch), static INT8 calibrated on training windows (ONNX QDQ) and FP16, each against FP32."""
    from pipeline.deploy import quantize as quant

    def work(experiment: dict, deployment: dict, folder: Path):  # type: ignore[no-untyped-def]
        windows, labels = split_windows(experiment, "val", payload.max_windows)
        onnx: str = next((variant_file(v) for v in deployment["variants"] if v["name"] == "onnx_fp32"), "")
        variants: list[dict[str, Any]] = []
        brief: dict[str, Any] = {}
        # Steps: an export first when an ONNX method has no ONNX model yet, then one per method.
        export_first = not onnx and bool(set(payload.methods) - {"dynamic_int8"})
        count = len(payload.methods) + export_first
        if export_first:
            # Sent alone on an experiment, the stage makes the FP32 ONNX model it quantises (export's defaults)
            # and keeps it as the deployment's onnx_fp32 variant, as export_onnx would have.
            variant, brief["onnx_fp32"] = _export(experiment, folder, ExportOptions(),
                                                  scaled(job.progress, 0.0, 1 / count), job.should_stop)
            variants.append(variant)
            onnx = variant_file(variant)
        for index, method in enumerate(payload.methods, start=export_first):
            name, kind, filename = QUANTIZED[method]
            progress = scaled(job.progress, index / count, (index + 1) / count)
            common: dict[str, Any] = {"on_progress": progress, "should_stop": job.should_stop}
            if method == "dynamic_int8":
                result = quant.quantize_dynamic_torch(experiment["model_file"], folder / filename, windows, labels, **common)
            elif method == "static_int8":  # calibrated on the dataset's real training windows, never on noise
                result = quant.quantize_static_onnx(onnx, folder / filename, split_windows(experiment, "train")[0],
                                                    windows, labels, per_channel=payload.per_channel,
                                                    max_calibration_windows=payload.calibration_windows, **common)
            else:
                result = quant.convert_fp16(onnx, folder / filename, windows, labels, **common)
            data = result.to_dict()
            metrics = {**{k: v for k, v in data.items() if k not in ("path", "details")}, **data["details"]}
            variants.append(variant_entry(name, kind, data["path"], metrics))
            brief[name] = {k: data[k] for k in ("size_bytes", "accuracy_change", "argmax_agreement")}
        return variants, brief, {}

    return run_stage("quantize", payload, job, piped, work)


def _table(result: dict[str, Any]) -> dict[str, Any]:
    """The benchmark without its file paths, plus ``recommended``: the fastest variant (p50 at the first batch
    size) among those that agree with the reference on at least ``MIN_AGREEMENT`` of the test windows."""
    agreeing = [v for v in result["variants"] if v["argmax_agreement"] >= MIN_AGREEMENT] or result["variants"][:1]
    best = min(agreeing, key=lambda v: v["latency"][0]["p50_ms"])
    return {**{k: v for k, v in result.items() if not k.endswith("_path")}, "recommended": best["name"]}


def _chosen(variants: list[dict[str, Any]], names: list[str] | None) -> list[dict[str, Any]]:
    """The variants to benchmark: those named (all when None), after the FP32 original, which
    every variant's argmax agreement is judged against. Refuses a name the deployment lacks."""
    if names is None:
        return variants
    missing = sorted(set(names) - {v["name"] for v in variants})
    if missing:
        raise InvalidInput(f"model_types {missing} are not variants of this deployment; it has "
                           f"{', '.join(v['name'] for v in variants)}")
    return [v for index, v in enumerate(variants) if index == 0 or v["name"] in names]


@job_actor(schema=BenchmarkModels)
def benchmark_models(payload: Any, job: JobContext, *piped: Any) -> dict | None:
    """Benchmark every variant on the test split (JSON + PNG), mark the deployment ready, announce ``deployment.ready``
    (its event commits with the ready deployment, the outbox)."""
    from actors.notifications import outbox_event
    from pipeline.deploy.benchmark import benchmark_variants

    def work(experiment: dict, deployment: dict, folder: Path):  # type: ignore[no-untyped-def]
        variants = _chosen(deployment["variants"], payload.model_types)
        windows, labels = split_windows(experiment, "test", payload.max_windows)
        result = benchmark_variants([(v["name"], v["kind"], variant_file(v)) for v in variants], windows, labels,
                                    folder, batch_sizes=payload.batch_sizes, warmup=payload.warmup, runs=payload.runs,
                                    threads=payload.threads, on_progress=job.progress,
                                    should_stop=job.should_stop).to_dict()
        table = _table(result)
        paths = {"benchmark_json_path": publish(result["json_path"]), "benchmark_png_path": publish(result["chart_path"])}
        # Tell people, with the recommended variant's figures.
        best = next(v for v in table["variants"] if v["name"] == table["recommended"])
        event = outbox_event("deployment.ready", {
            "job_id": job.message_id, "deployment_id": deployment["deployment_id"],
            "model_id": deployment["experiment_id"], "format": best["name"], "size_bytes": best["size_bytes"],
            "latency_ms": best["latency"][0]["p50_ms"]}, event_id=f"deployment.ready:{deployment['deployment_id']}")
        return [], {"recommended": table["recommended"], **paths}, {"benchmark": table, **paths, "events": [event]}

    summary = run_stage("benchmark", payload, job, piped, work)
    if summary is not None:
        settings = get_settings()
        track_deployment(settings, get_database(settings.database_url), summary["deployment_id"])
    return summary
