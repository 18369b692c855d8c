"""``train_model`` through a real gpu_training worker: records, files, idempotency, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.platform.errors import PayloadInvalid
from actors.store.experiments import (
    create_experiment,
    experiment_history,
    find_experiment,
    get_experiment,
)
from actors.training import train_model
from pipeline.artifacts import file_sha256
from tests.records import artifact, copy_dataset_file, make_dataset, record_dataset
from tests.training.conftest import TINY_CNN


@pytest.fixture(scope="module")
def gpu_worker(lane, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One gpu_training worker on the lane, as its Procfile line starts it."""
    workers = lane.workers(tmp_path_factory.mktemp("training-worker-logs"))
    try:
        lane.start_gpu_worker(workers, "gpu_training")
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture(scope="module")
def trained_cnn(lane, gpu_worker, tiny_dataset):  # type: ignore[no-untyped-def]
    """A tiny CNN trained for two epochs by the worker: (message, finished job)."""
    message = lane.send(train_model, experiment_id="exp-cnn", dataset_id=tiny_dataset["dataset_id"], name="tiny cnn", **TINY_CNN)
    job = lane.wait(message.message_id, timeout=120)
    assert job.state == "succeeded", (job.error_type, job.error_message, gpu_worker.log("gpu_training")[-3000:])
    return message, job


def _files(directory: str) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def test_deep_model_trains_on_a_worker_and_records_history_files_and_metrics(lane, trained_cnn, database, tiny_dataset):
    import numpy as np
    import torch

    from pipeline.training import load_training_data
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.training.loop import predict_proba

    message, job = trained_cnn
    experiment = get_experiment(database, "exp-cnn")
    assert experiment["status"] == "completed" and experiment["job_id"] == message.message_id
    assert experiment["model_args"]["width"] == 8 and experiment["training_config"]["epochs"] == 2
    assert experiment["epochs_run"] == 2 and experiment["best_epoch"] in (1, 2)
    # Easily separable classes: well above chance (1/3) at window and record level.
    assert experiment["test_accuracy"] > 0.6 and experiment["test_record_accuracy"] > 0.6
    assert experiment["test_f1_macro"] > 0.5
    # Tables sized to the classes present: the 3 of the dataset (and any other the model predicted), not 11.
    keys, matrix = experiment["metrics"]["class_keys"], experiment["metrics"]["confusion_matrix"]
    assert {"sain", "desequilibre", "oilwhirl"} <= set(keys) and len(matrix) == len(keys) < 11

    history = experiment_history(database, "exp-cnn")
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(row["val_acc"] is not None and row["lr"] == pytest.approx(1e-2) for row in history)

    for name in ("model_path", "metrics_path", "predictions_path"):
        assert Path(artifact(experiment[name])).is_file() and not Path(experiment[name]).is_absolute(), name
    assert (Path(experiment["checkpoint_dir"]) / "last.pt").is_file()
    assert experiment["model_sha256"] == file_sha256(artifact(experiment["model_path"]))
    assert experiment["parameter_count"] > 0 and experiment["duration_s"] > 0

    assert job.progress == 1.0 and job.attempts == 1
    assert job.result["experiment_id"] == "exp-cnn" and job.result["status"] == "completed"
    assert job.result["test_accuracy"] == experiment["test_accuracy"]
    assert job.result["metrics_path"] == experiment["metrics_path"]

    # The saved best weights load (weights_only) and give the saved test probabilities.
    model, meta = load_checkpoint(artifact(experiment["model_path"]))
    assert meta["model_key"] == "cnn1d" and meta["model_args"]["width"] == 8
    data = load_training_data(tiny_dataset["path"])
    torch.set_num_threads(1)
    probabilities = predict_proba(model, data.test.windows, 8, torch.device("cpu"))
    saved = np.load(artifact(experiment["predictions_path"]))
    np.testing.assert_allclose(probabilities, saved["probabilities"], atol=1e-5)

    [event] = lane.notifications("training.completed", "exp-cnn")
    assert event["job_id"] == message.message_id and event["model"] == "cnn1d"
    assert event["metrics"]["test_accuracy"] == experiment["test_accuracy"]


def test_completed_experiment_sent_again_returns_its_result_and_creates_nothing(lane, trained_cnn, database, tiny_dataset):
    _, first = trained_cnn
    before = get_experiment(database, "exp-cnn")
    history = experiment_history(database, "exp-cnn")
    files = _files(before["checkpoint_dir"])

    again = [
        lane.send(train_model, experiment_id="exp-cnn"),
        lane.send(train_model, experiment_id="exp-cnn", dataset_id=tiny_dataset["dataset_id"], name="tiny cnn", **TINY_CNN),
    ]
    for message in again:
        job = lane.wait(message.message_id)
        assert job.state == "succeeded" and job.result == first.result
    assert get_experiment(database, "exp-cnn") == before
    assert experiment_history(database, "exp-cnn") == history
    assert _files(before["checkpoint_dir"]) == files
    assert len(lane.notifications("training.completed", "exp-cnn")) == 1


def test_classical_model_trains_through_the_same_records(lane, gpu_worker, tiny_dataset, database):
    message = lane.send(train_model, experiment_id="exp-rf", dataset_id=tiny_dataset["dataset_id"],
                        model_key="rf", model_args={"n_estimators": 20})
    job = lane.wait(message.message_id, timeout=120)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    experiment = get_experiment(database, "exp-rf")
    assert experiment["status"] == "completed" and experiment["training_config"] == {}
    assert experiment["model_path"].endswith("model.skops")
    assert experiment["model_sha256"] == file_sha256(artifact(experiment["model_path"]))
    assert Path(artifact(experiment["metrics_path"])).is_file() and Path(artifact(experiment["predictions_path"])).is_file()
    assert experiment["test_accuracy"] > 0.6
    assert experiment_history(database, "exp-rf") == []


@pytest.fixture(scope="module")
def bad_datasets(database, tiny_dataset):  # type: ignore[no-untyped-def]
    """Datasets that cannot be trained on, each for its own reason."""
    truncated = copy_dataset_file(tiny_dataset, "ds-truncated")
    truncated.write_bytes(truncated.read_bytes()[:4096])
    record_dataset(database, "ds-truncated", truncated)
    tampered = copy_dataset_file(tiny_dataset, "ds-tampered")
    record_dataset(database, "ds-tampered", tampered, checksum="0" * 64)
    record_dataset(database, "ds-unfinished", tampered, status="running")
    make_dataset(database, "ds-one-class", fault_types=["sain"], records_per_class=3)


def _create(dataset_id: str, **overrides):  # type: ignore[no-untyped-def]
    return {"dataset_id": dataset_id, **TINY_CNN, **overrides}


BAD_INPUT = {
    # experiment id: (payload, error type, words of the message, experiment afterwards). A bad model key,
    # argument or training option never gets here: it is refused on send (tests/platform/test_payload_checks.py).
    # The lane sends with message(), as a producer that cannot read the database: the worker refuses ids.
    "exp-no-dataset": (_create("ds-nowhere"), "RecordNotFound", "no dataset with id 'ds-nowhere'", None),
    "exp-unfinished": (_create("ds-unfinished"), "InvalidInput", "is running, not completed", None),
    # Its file is read (for its classes and channels) before the experiment is created: refused, nothing recorded.
    "exp-truncated": (_create("ds-truncated"), "DatasetFileError", "truncated or corrupt", None),
    "exp-tampered": (_create("ds-tampered"), "DatasetFileError", "does not match its recorded checksum", "failed"),
    "exp-one-class": (_create("ds-one-class"), "InvalidInput", "one class in its train split (sain)", "failed"),
    "exp-missing": ({}, "RecordNotFound", "no experiment with id 'exp-missing'", None),
    # A message that names the completed experiment with other settings must not touch it.
    "exp-cnn": (_create("ds-train-tiny", model_args={"width": 16, "depth": 2}), "InvalidInput",
                "already exists with another", "completed"),
}


def test_bad_input_fails_once_with_a_clear_error_and_loses_nothing(lane, gpu_worker, database, trained_cnn, bad_datasets):
    create_experiment(database, "exp-stored-bad", dataset_id="ds-train-tiny", model_key="cnn1d",
                      model_args={"width": "wide"}, training_config={})
    cases = {**BAD_INPUT, "exp-stored-bad": ({}, "InvalidInput", "argument 'width' of model 'cnn1d' must be int", "failed")}
    completed_before = get_experiment(database, "exp-cnn")
    history_before = experiment_history(database, "exp-cnn")
    sent = {experiment_id: lane.send(train_model, experiment_id=experiment_id, **payload)
            for experiment_id, (payload, *_) in cases.items()}

    for experiment_id, (_, error_type, words, afterwards) in cases.items():
        job = lane.wait(sent[experiment_id].message_id)
        assert (job.state, job.attempts, job.error_type) == ("failed", 1, error_type), (experiment_id, job.error_message)
        assert words in job.error_message, (experiment_id, job.error_message)
        experiment = find_experiment(database, experiment_id)
        assert (experiment and experiment["status"]) == afterwards, experiment_id
        if afterwards == "failed":
            assert words in experiment["error"]
            [event] = lane.notifications("training.failed", experiment_id)
            assert words in event["error"]
    assert get_experiment(database, "exp-cnn") == completed_before
    assert experiment_history(database, "exp-cnn") == history_before


def test_payload_that_names_no_experiment_is_refused_on_send(app):
    with pytest.raises(PayloadInvalid, match="give experiment_id, or dataset_id and model_key"):
        train_model.send()
    with pytest.raises(PayloadInvalid, match="dataset_id and model_key go together"):
        train_model.send(dataset_id="ds-1")
    with pytest.raises(PayloadInvalid, match="only go with dataset_id and model_key"):
        train_model.send(experiment_id="exp-1", model_args={"width": 8})
    with pytest.raises(PayloadInvalid, match="Extra inputs are not permitted"):
        train_model.send(experiment_id="exp-1", epochs=3)
