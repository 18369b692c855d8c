"""The deployment pipeline through the real Procfile workers: every stage's summary handed to the
next, a ready deployment with its files, the same request answered from the record, a failed stage
that stops the rest with its reason recorded, and a stage run alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from actors.deploy import benchmark_models, deploy_experiment, export_onnx, quantize_model
from actors.platform.errors import JobNotFound
from actors.platform.jobs import get_job, wait_for_job
from actors.store.deployments import STAGES, get_deployment
from actors.store.notifications import list_inbox
from pipeline.artifacts import file_sha256
from tests.deploy_actors.conftest import QUICK
from tests.records import artifact
from tests.waiting import wait_until

VARIANTS = {"torch_fp32", "onnx_fp32", "torch_pruned", "torch_dynamic_int8", "onnx_static_int8", "onnx_fp16"}


def _run(actor, timeout_s: float = 120, **kwargs):  # type: ignore[no-untyped-def]
    message = actor.send(**kwargs)
    return wait_for_job(message.message_id, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def deployed(workers, experiment) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """One full deployment: the launcher's job and every stage's finished job, in order."""
    launcher = _run(deploy_experiment, experiment_id=experiment["experiment_id"], options=QUICK)
    assert launcher.state == "succeeded", (launcher.error_type, launcher.error_message)
    stage_jobs = {stage: launcher.result["stages"][stage]["job_id"] for stage in STAGES}
    jobs = {}
    for stage in STAGES:
        # Each stage's message exists only once the previous stage succeeded and passed its result on.
        wait_until(lambda s=stage: _known(stage_jobs[s]), timeout=180, what=f"the {stage} stage to be enqueued")
        jobs[stage] = wait_for_job(stage_jobs[stage], timeout_s=180)
        assert jobs[stage].state == "succeeded", (stage, jobs[stage].error_type, jobs[stage].error_message,
                                                  workers.log("cpu_processing")[-3000:])
    return {"launcher": launcher, "jobs": jobs}


def _known(message_id: str) -> bool:
    try:
        get_job(message_id)
        return True
    except JobNotFound:
        return False


def test_deploy_experiment_returns_at_once_with_the_queued_deployment_and_its_stage_jobs(deployed, experiment):
    result = deployed["launcher"].result
    assert result["launched"] is True and result["experiment_id"] == experiment["experiment_id"]
    assert result["status"] == "queued" and result["deployment_id"].startswith("dep-")
    assert [v["name"] for v in result["variants"]] == ["torch_fp32"]
    assert {s: e["status"] for s, e in result["stages"].items()} == dict.fromkeys(STAGES, "queued")


def test_each_stage_receives_the_previous_stage_summary(deployed):
    jobs = deployed["jobs"]
    previous = None
    for stage in STAGES:
        summary = jobs[stage].result
        assert summary["stage"] == stage and summary["job_id"] == jobs[stage].message_id
        # ``after`` is what the stage read from the summary Dramatiq appended to its arguments.
        assert summary["after"] == (previous and {"stage": previous, "job_id": jobs[previous].message_id})
        assert summary["deployment_id"] == deployed["launcher"].result["deployment_id"]
        previous = stage
    assert set(jobs["benchmark"].result["variants"]) == VARIANTS


def test_the_last_stage_leaves_a_ready_deployment_with_its_files_and_benchmark(deployed, database):
    record = get_deployment(database, deployed["launcher"].result["deployment_id"])
    assert (record["status"], record["stage"], record["error"]) == ("ready", "benchmark", None)
    assert {s: e["status"] for s, e in record["stages"].items()} == dict.fromkeys(STAGES, "completed")
    assert {v["name"] for v in record["variants"]} == VARIANTS
    for variant in record["variants"]:
        path = Path(artifact(variant["path"]))
        assert path.is_file() and variant["size"] == path.stat().st_size and variant["sha256"] == file_sha256(path)
    assert record["variants"][0]["name"] == "torch_fp32"  # the benchmark's reference
    assert Path(artifact(record["benchmark_png_path"])).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(Path(artifact(record["benchmark_json_path"])).read_text())
    table = record["benchmark"]
    assert [v["name"] for v in saved["variants"]] == [v["name"] for v in table["variants"]]
    assert table["batch_sizes"] == [1, 8] and table["runs"] == 3 and table["recommended"] in VARIANTS
    assert all(len(v["latency"]) == 2 and 0 <= v["accuracy"] <= 1 for v in table["variants"])
    metrics = {v["name"]: v["metrics"] for v in record["variants"]}
    assert metrics["onnx_fp32"]["max_abs_diff"] <= 1e-4 and metrics["onnx_fp32"]["argmax_agreement"] == 1.0
    assert 0.25 <= metrics["torch_pruned"]["sparsity"] <= 0.35 and metrics["torch_pruned"]["fused_pairs"] >= 1


def test_static_int8_is_calibrated_on_the_experiment_dataset_training_windows(deployed, database, experiment):
    from pipeline.datasets.hdf5 import read_windows
    from pipeline.deploy.quantize import WindowCalibrationReader

    record = get_deployment(database, deployed["launcher"].result["deployment_id"])
    static = next(v["metrics"] for v in record["variants"] if v["name"] == "onnx_static_int8")
    train = read_windows(experiment["dataset"]["path"], "train")[0]
    expected = WindowCalibrationReader(train, "signal", max_windows=QUICK["quantize"]["calibration_windows"])
    assert static["calibration_sha256"] == expected.fingerprint()
    assert static["calibration_windows"] == QUICK["quantize"]["calibration_windows"]


def test_deployment_ready_is_delivered_with_the_recommended_variant(deployed, database):
    deployment_id = deployed["launcher"].result["deployment_id"]
    item = wait_until(lambda: next((i for i in list_inbox(database, "default", limit=200)
                                    if i["event_type"] == "deployment.ready"
                                    and i["payload"]["deployment_id"] == deployment_id), None),
                      timeout=60, what="the deployment.ready inbox item")
    table = get_deployment(database, deployment_id)["benchmark"]
    best = next(v for v in table["variants"] if v["name"] == table["recommended"])
    assert item["payload"]["format"] == best["name"] and item["payload"]["size_bytes"] == best["size_bytes"]
    assert item["link"].endswith(f"/deployments/{deployment_id}")


def test_deploying_again_with_the_same_options_returns_the_ready_deployment(deployed, experiment, database):
    first = get_deployment(database, deployed["launcher"].result["deployment_id"])
    # The defaults spelled out are the same config.
    again = _run(deploy_experiment, experiment_id=experiment["experiment_id"],
                 options={**QUICK, "export": {"tolerance": 1e-4}})
    assert again.state == "succeeded" and again.result["launched"] is False
    assert again.result["deployment_id"] == first["deployment_id"] and again.result["status"] == "ready"
    assert get_deployment(database, first["deployment_id"]) == first


def test_a_failed_stage_stops_the_pipeline_and_the_record_says_which_and_why(workers, experiment, database):
    # Tolerance 0: ONNX Runtime never matches torch to the last bit, so parity fails.
    options = {**QUICK, "export": {"tolerance": 0.0}}
    launcher = _run(deploy_experiment, experiment_id=experiment["experiment_id"], options=options)
    assert launcher.state == "succeeded", (launcher.error_type, launcher.error_message)
    stages = launcher.result["stages"]
    export = wait_for_job(stages["export"]["job_id"], timeout_s=120)
    assert (export.state, export.error_type, export.attempts) == ("failed", "ParityError", 1)
    record = get_deployment(database, launcher.result["deployment_id"])
    assert (record["status"], record["stage"]) == ("failed", "export")
    assert record["error"].startswith("export: ParityError: ONNX output differs from torch: max |Δ logits|")
    assert record["stages"]["export"]["status"] == "failed"
    # The rest never ran: their messages were never even enqueued.
    for stage in STAGES[1:]:
        assert not _known(stages[stage]["job_id"]) and record["stages"][stage]["status"] == "queued"
    assert [v["name"] for v in record["variants"]] == ["torch_fp32"]


def test_a_stage_runs_alone_on_an_experiment_then_on_its_deployment(workers, experiment, database):
    export = _run(export_onnx, experiment_id=experiment["experiment_id"], opset=17)
    assert export.state == "succeeded", (export.error_type, export.error_message)
    summary = export.result
    assert summary["after"] is None and summary["variants"] == ["torch_fp32", "onnx_fp32"]
    assert summary["result"]["opset"] == 17 and summary["result"]["exporter"] == "torchscript"
    record = get_deployment(database, summary["deployment_id"])
    assert (record["status"], record["config"]["stage"]) == ("partial", "export")

    quantized = _run(quantize_model, deployment_id=summary["deployment_id"], methods=["fp16"])
    assert quantized.state == "succeeded", (quantized.error_type, quantized.error_message)
    assert quantized.result["variants"] == ["torch_fp32", "onnx_fp32", "onnx_fp16"]
    assert get_deployment(database, summary["deployment_id"])["status"] == "partial"


def test_quantize_alone_on_an_experiment_with_its_defaults_makes_a_working_int8_model(workers, experiment, database):
    # Given only an experiment id, every default method (two need an ONNX model that nothing exported yet)
    quantized = _run(quantize_model, timeout_s=240, experiment_id=experiment["experiment_id"])
    assert quantized.state == "succeeded", (quantized.error_type, quantized.error_message)
    # Then the stage exported the FP32 ONNX model itself and quantised it
    assert quantized.result["variants"] == ["torch_fp32", "onnx_fp32", "torch_dynamic_int8", "onnx_static_int8",
                                            "onnx_fp16"]
    record = get_deployment(database, quantized.result["deployment_id"])
    int8 = next(v for v in record["variants"] if v["name"] == "onnx_static_int8")
    assert int8["metrics"]["argmax_agreement"] >= 0.0 and Path(artifact(int8["path"])).is_file()
    # And the INT8 file is a model ONNX Runtime runs on a dataset window, with INT8 weights in it
    import numpy as np
    import onnx
    import onnxruntime

    from pipeline.datasets.hdf5 import read_windows

    windows = read_windows(experiment["dataset"]["path"], "test")[0][:2]
    session = onnxruntime.InferenceSession(artifact(int8["path"]), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: windows[:, None, :].astype(np.float32)})[0]
    assert logits.shape == (2, 11) and np.isfinite(logits).all()
    assert any(t.data_type == onnx.TensorProto.INT8 for t in onnx.load(artifact(int8["path"])).graph.initializer)


def test_opset_13_exports_quantizes_and_a_benchmark_measures_only_the_chosen_variants(workers, experiment, database):
    import onnx

    export = _run(export_onnx, experiment_id=experiment["experiment_id"], opset=13)
    assert export.state == "succeeded", (export.error_type, export.error_message)
    assert export.result["result"]["opset"] == 13 and export.result["result"]["exporter"] == "torchscript"
    deployment_id = export.result["deployment_id"]
    onnx_path = next(artifact(v["path"]) for v in get_deployment(database, deployment_id)["variants"] if v["name"] == "onnx_fp32")
    assert {o.domain: o.version for o in onnx.load(onnx_path).opset_import}[""] == 13
    # Per-channel static INT8 needs opset 13 (an axis on its QDQ nodes): it is made from this export.
    quantized = _run(quantize_model, deployment_id=deployment_id, methods=["static_int8", "fp16"],
                     calibration_windows=16)
    assert quantized.state == "succeeded", (quantized.error_type, quantized.error_message)

    bench = _run(benchmark_models, deployment_id=deployment_id, model_types=["onnx_static_int8"],
                 batch_sizes=[1], warmup=1, runs=2)
    assert bench.state == "succeeded", (bench.error_type, bench.error_message)
    table = get_deployment(database, deployment_id)["benchmark"]
    # The chosen variant, after the FP32 original every agreement is judged against; fp16 is left out.
    assert [v["name"] for v in table["variants"]] == ["torch_fp32", "onnx_static_int8"]


def test_a_benchmark_of_a_variant_the_deployment_lacks_and_an_opset_below_13_are_refused(workers, experiment):
    from actors.platform.errors import PayloadInvalid

    with pytest.raises(PayloadInvalid, match="per-channel scales"):
        export_onnx.send(experiment_id=experiment["experiment_id"], opset=12)
    export = _run(export_onnx, experiment_id=experiment["experiment_id"], opset=14)
    assert export.state == "succeeded", (export.error_type, export.error_message)
    refused = _run(benchmark_models, deployment_id=export.result["deployment_id"], model_types=["onnx_fp16"],
                   batch_sizes=[1], warmup=0, runs=1)
    assert (refused.state, refused.error_type, refused.attempts) == ("failed", "InvalidInput", 1)
    assert "model_types ['onnx_fp16'] are not variants of this deployment; it has torch_fp32, onnx_fp32" in (
        refused.error_message)
