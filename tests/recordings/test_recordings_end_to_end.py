"""Real-format recordings end to end through the Procfile workers: import with a label map,
train a deep and a classical model on the recordings' own classes, deploy to ONNX and get the
trained model's predictions from a raw recording; a model refuses data of another class set."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.datasets import generate_dataset, import_mat_dataset
from actors.deploy import deploy_experiment
from actors.evaluation import compare_architectures, error_analysis, robustness_report
from actors.platform.jobs import wait_for_job
from actors.store.datasets import get_dataset
from actors.store.db import get_database
from actors.store.deployments import get_deployment
from actors.store.experiments import get_experiment
from actors.training import train_model
from actors.xai import explain_signal
from config.settings import get_settings
from pipeline.datasets.hdf5 import read_geometry, read_split, read_windows
from pipeline.datasets.matread import read_mat
from pipeline.deploy._common import onnx_logits, ort_session
from pipeline.deploy.export import read_model_metadata
from pipeline.deploy.preprocess import recording_windows
from pipeline.training.checkpoint import load_checkpoint
from pipeline.training.inference import predict_proba
from tests.recordings.rig import FOLDERS, KINDS, write_rig_mat_files
from tests.records import artifact
from tests.waiting import wait_until

FS = 12_000
CHANNELS = ["*_DE_time", "*_FE_time"]


def _run(actor, timeout_s: float = 300, **kwargs):  # type: ignore[no-untyped-def]
    job = wait_for_job(actor.send(**kwargs).message_id, timeout_s=timeout_s)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    return job


@pytest.fixture(scope="module")
def rig() -> dict[str, Any]:
    """Rig recordings under the workers' import root: 4 classes x 6 recordings of 4 s."""
    root = get_settings().import_roots[0] / f"rig-{uuid.uuid4().hex[:8]}"
    files = write_rig_mat_files(root, recordings_per_class=6, seconds=4.0, seed=3)
    return {"root": root, "files": files}


@pytest.fixture(scope="module")
def dataset(workers, rig) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The recordings imported by the cpu_processing worker with a label map, both channels, native rate."""
    job = _run(import_mat_dataset, paths=[str(rig["root"])], dataset_id=f"rig-{uuid.uuid4().hex[:6]}",
               labels={"patterns": {f"**/{folder}/*": kind for kind, folder in FOLDERS.items()}},
               channels=CHANNELS, channel_names=["DE", "FE"], sampling_rate="native", source_fs=FS, record_seconds=2.0,
               window_seconds=0.5, overlap=0.5, normalize="record", seed=1)
    return get_dataset(_database(), job.result["dataset_id"])


def _database():  # type: ignore[no-untyped-def]
    return get_database(get_settings().database_url)


@pytest.fixture(scope="module")
def trained(dataset) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A small 1-D CNN and a random forest, each trained by the workers on the rig dataset."""
    deep = _run(train_model, dataset_id=dataset["dataset_id"], model_key="cnn1d",
                model_args={"width": 8, "depth": 3},
                training={"epochs": 12, "batch_size": 16, "lr": 5e-3, "scheduler": "none", "seed": 0})
    forest = _run(train_model, dataset_id=dataset["dataset_id"], model_key="rf", model_args={"n_estimators": 100})
    return {key: get_experiment(_database(), job.result["experiment_id"]) for key, job in
            (("cnn1d", deep), ("rf", forest))}


def test_the_import_records_the_recordings_own_classes_and_layout(dataset):
    assert dataset["status"] == "completed"
    assert set(dataset["class_counts"]) == set(KINDS)
    geometry = read_geometry(artifact(dataset["path"]))
    assert geometry.class_keys == KINDS and geometry.channels == ("DE", "FE")
    assert (geometry.sampling_rate, geometry.record_length, geometry.window_length) == (FS, 24_000, 6_000)
    assert geometry.window_hop == 3_000
    files = [{m["source_file"] for m in read_split(artifact(dataset["path"]), s).metadata} for s in ("train", "val", "test")]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])


def test_deep_and_classical_models_learn_the_recordings_classes(trained):
    for key, experiment in trained.items():
        assert experiment["status"] == "completed", key
        # Four classes: chance is 0.25.
        assert experiment["test_accuracy"] > 0.7, (key, experiment["test_accuracy"])
    deep = trained["cnn1d"]
    assert deep["model_args"]["num_classes"] == 4 and deep["model_args"]["in_channels"] == 2
    _, meta = load_checkpoint(artifact(deep["model_path"]))
    assert meta["class_keys"] == list(KINDS) and meta["extra"]["data"]["input_shape"] == [2, 6_000]


def test_the_evaluations_follow_the_recordings_classes_and_channels(workers, trained):
    deep, forest = trained["cnn1d"]["experiment_id"], trained["rf"]["experiment_id"]
    errors = _run(error_analysis, experiment_id=deep).result
    assert errors["result"]["class_keys"] == list(KINDS)
    noisy = _run(robustness_report, experiment_id=deep, snr_db=[20.0], max_windows=28).result["result"]
    assert noisy["clean"]["accuracy"] > 0.5
    compared = _run(compare_architectures, experiment_ids=[deep, forest], latency_windows=2, repeats=1).result
    assert {row["model_key"] for row in compared["result"]["models"]} == {"cnn1d", "rf"}


def test_the_deployed_onnx_model_gives_the_trained_predictions_on_a_raw_recording(workers, trained, dataset):
    launcher = _run(deploy_experiment, experiment_id=trained["cnn1d"]["experiment_id"],
                    options={"quantize": {"calibration_windows": 16}, "benchmark": {"batch_sizes": [1], "warmup": 1, "runs": 2}})
    deployment_id = launcher.result["deployment_id"]
    ready = wait_until(lambda: get_deployment(_database(), deployment_id)["status"] in ("ready", "failed")
                       and get_deployment(_database(), deployment_id), timeout=300, what="the deployment to end")
    assert ready["status"] == "ready", ready.get("error")
    variants = {v["name"]: v for v in ready["variants"]}
    assert {"onnx_fp32", "onnx_static_int8", "torch_dynamic_int8"} <= set(variants)
    onnx_path = artifact(variants["onnx_fp32"]["path"])
    metadata = read_model_metadata(onnx_path)
    assert metadata["pfd.class_keys"] == list(KINDS)
    assert metadata["pfd.data"]["normalization"] == "record" and metadata["pfd.data"]["sampling_rate"] == FS
    # A raw file, as a consumer holds it: prepared from the ONNX file's own metadata.
    test_files = sorted({m["source_file"] for m in read_split(artifact(dataset["path"]), "test").metadata})
    raw = read_mat(get_settings().import_roots[0] / test_files[0], channels=CHANNELS, rate=None, source_fs=FS,
                   find_label=False)
    windows, _ = recording_windows(raw.signal, FS, metadata["pfd.data"])
    deployed = onnx_logits(ort_session(onnx_path), windows).argmax(axis=1)
    model, _ = load_checkpoint(artifact(trained["cnn1d"]["model_path"]))
    stored = [k for k, m in enumerate(read_split(artifact(dataset["path"]), "test").metadata) if m["source_file"] == test_files[0]]
    test_windows, _, records = read_windows(artifact(dataset["path"]), "test")
    trained_on_dataset = predict_proba(model, test_windows[np.isin(records, stored)]).argmax(axis=1)
    np.testing.assert_array_equal(deployed, trained_on_dataset)


def test_two_channel_models_are_explained_per_sensor(workers, trained, dataset):
    from pipeline.xai import load_explanation

    signal = {"dataset_id": dataset["dataset_id"], "split": "test", "record": 0, "window": 1}
    deep = _run(explain_signal, timeout_s=180, experiment_id=trained["cnn1d"]["experiment_id"],
                method="integrated_gradients", params={"n_steps": 32}, signal=signal).result
    # The deep model's attributions cover both sensors' samples, named in the figure
    stored = load_explanation(artifact(deep["npz_path"]))
    assert stored.attributions.shape == (2, 6_000)
    assert deep["summary"]["channels"] == 2 and len(deep["summary"]["summary"]["channel_totals"]) == 2
    assert Path(artifact(deep["png_path"])).read_bytes()[:4] == b"\x89PNG"
    # The forest is explained by each channel's features
    forest = _run(explain_signal, timeout_s=180, experiment_id=trained["rf"]["experiment_id"], method="shap",
                  signal=signal).result
    names = load_explanation(artifact(forest["npz_path"])).feature_names
    assert len(names) == 72 and names[0] == "DE:rms" and names[36] == "FE:rms"


def test_a_model_refuses_data_of_another_class_set(workers, trained):
    generated = _run(generate_dataset, dataset_id=f"gen-{uuid.uuid4().hex[:6]}", fault_types=["sain", "jeu", "usure"],
                     records_per_class=3, seed=5)
    job = wait_for_job(explain_signal.send(
        experiment_id=trained["rf"]["experiment_id"], method="shap",
        signal={"dataset_id": generated.result["dataset_id"], "split": "test", "record": 0}).message_id, timeout_s=120)
    assert job.state == "failed" and job.error_type == "InvalidInput"
    assert "trained on the classes [normal, inner_race, outer_race, ball]" in job.error_message
