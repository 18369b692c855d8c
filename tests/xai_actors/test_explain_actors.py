"""Explanation actors through the real Procfile workers: one signal, the stored copy, a batch
fan-out across both cpu_processing processes, and refused requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.platform.errors import PayloadInvalid
from actors.platform.jobs import get_job, get_tree, wait_for_job
from actors.store.explanations import get_batch, get_explanation
from actors.store.notifications import list_inbox
from actors.xai import explain_batch, explain_signal, explanation_batch
from config.settings import get_settings
from pipeline.domain import WINDOW_LENGTH
from tests.records import artifact, written
from tests.waiting import wait_until
from tests.xai_actors.conftest import artifact_files

IG = {"n_steps": 8}


def _signal(experiment: dict[str, Any], record: int, window: int = 0) -> dict[str, Any]:
    return {"dataset_id": experiment["dataset_id"], "split": "test", "record": record, "window": window}


def _direct(experiment: dict[str, Any], signal: dict[str, Any], method: str, params: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The same explanation computed here, by the pipeline alone (the "single run")."""
    from pipeline.datasets.hdf5 import read_split
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.xai import explain

    model, meta = load_checkpoint(experiment["model_path"])
    rows = read_split(experiment["dataset"]["path"], signal["split"], slice(signal["record"], signal["record"] + 1))
    window = rows.signals[0].reshape(-1, WINDOW_LENGTH)[signal["window"]]
    return explain(model, meta["model_key"], window, method, params)


def _same_attributions(npz_path: str, expected: np.ndarray) -> bool:
    from pipeline.xai import load_explanation

    stored = load_explanation(artifact(npz_path)).attributions
    # Stored as float32: equal up to float32 rounding of the largest value.
    return stored.shape == expected.shape and np.allclose(stored, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def _run(actor, **kwargs):  # type: ignore[no-untyped-def]
    message = actor.send(**kwargs)
    return message, wait_for_job(message.message_id, timeout_s=90)


@pytest.fixture(scope="module")
def single(workers, experiment):  # type: ignore[no-untyped-def]
    """One Grad-CAM explanation through a cpu_processing worker: (signal, finished job)."""
    signal = _signal(experiment, record=0, window=1)
    _, job = _run(explain_signal, experiment_id=experiment["experiment_id"], signal=signal, method="gradcam")
    assert job.state == "succeeded", (job.error_type, job.error_message, workers.log("cpu_processing")[-3000:])
    return signal, job


def test_explain_signal_on_a_worker_returns_a_summary_and_writes_its_files(single, experiment, database):
    signal, job = single
    result = job.result
    assert result["status"] == "completed" and result["job_id"] == job.message_id
    assert result["signal"] == signal and result["method"] == "gradcam"
    summary = result["summary"]
    assert summary["kind"] == "signal" and summary["length"] == WINDOW_LENGTH
    assert 0 <= summary["predicted_class"] < 11 and 0 < summary["confidence"] <= 1
    assert summary["summary"]["top_segments"] and "total_ms" in summary["timings_ms"]
    # Compact: no attribution array went through the results backend.
    assert "attributions" not in summary and len(json.dumps(result)) < 10_000
    folder = get_settings().artifact_root / "explanations" / result["explanation_id"]
    assert written(result["npz_path"]).parent == folder and written(result["png_path"]).parent == folder
    assert Path(artifact(result["png_path"])).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert get_explanation(database, result["explanation_id"]) == result
    assert _same_attributions(result["npz_path"], _direct(experiment, signal, "gradcam", {}).attributions)


def test_explaining_the_same_request_again_returns_the_stored_explanation(single, experiment):
    signal, first = single
    folder = written(first.result["npz_path"]).parent
    files = artifact_files(folder)
    # The default top_k spelled out is the same request.
    _, again = _run(explain_signal, experiment_id=experiment["experiment_id"], signal=signal, method="gradcam",
                    params={"top_k": 5})
    assert again.state == "succeeded" and again.message_id != first.message_id
    assert again.result == first.result  # same id, and the first job's record
    assert artifact_files(folder) == files


def test_batch_fans_out_over_both_processes_finalizes_once_and_survives_a_bad_member(
    workers, experiment, database,
):
    signals = [_signal(experiment, record, window) for record in range(3) for window in (2, 3)]
    bad = _signal(experiment, record=99)
    _, job = _run(explain_batch, experiment_id=experiment["experiment_id"], signals=[*signals, bad],
                  method="integrated_gradients", params=IG)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    batch_id, fanout_id = job.result["batch_id"], job.result["fanout_id"]
    batch = wait_until(lambda: (b := get_batch(database, batch_id))["status"] != "running" and b, timeout=120,
                       what="the batch to be finalized")
    assert (batch["status"], batch["n_signals"], batch["done"], batch["failed"]) == ("completed", 7, 6, 1)
    assert Path(artifact(batch["plot_path"])).read_bytes()[:4] == b"\x89PNG"
    # One tree, named by the batch's id: the launcher, its seven members and the finalize, all
    # final when waiting on the launcher returned; its outcome names the member that failed.
    tree = get_tree(batch_id)
    assert tree.root_id == job.message_id and tree.final and tree.resolved_from == "explanation batch"
    work = sorted(node.actor for node in tree.nodes if node.queue != "notifications")
    assert work == ["explain_batch", *["explain_signal"] * 7, "finalize_explain_batch"]
    assert (tree.state, tree.first_failure.error_type) == ("failed", "InvalidInput")
    view = explanation_batch(batch_id)
    assert view["progress"] == 1.0 and view["fanout_id"] == fanout_id

    # The bad member failed alone, at once, with a clear reason; no retry.
    bad_link = batch["links"][-1]
    assert bad_link["signal"] == bad and bad_link["status"] == "failed"
    assert "record index 99 is out of range" in bad_link["error"]
    bad_job = get_job(bad_link["job_id"])
    assert (bad_job.state, bad_job.error_type, bad_job.attempts) == ("failed", "InvalidInput", 1)

    # The others: done on both cpu_processing processes, equal to single runs.
    good = batch["links"][:-1]
    jobs = [get_job(link["job_id"]) for link in good]
    assert all(j.state == "succeeded" and j.fanout_id == fanout_id for j in jobs)
    workers_used = {j.worker for j in jobs}
    assert len(workers_used) == 2, workers_used
    for link in good:
        assert link["status"] == "completed" and Path(artifact(link["png_path"])).is_file()
        expected = _direct(experiment, link["signal"], "integrated_gradients", IG)
        assert link["predicted_class"] == expected.predicted_class
        assert _same_attributions(link["npz_path"], expected.attributions)

    # The callback ran exactly once, and told the user.
    def finalized() -> int:
        lines = [json.loads(line) for line in workers.log("high_priority").splitlines() if line.startswith("{")]
        return sum(line.get("event") == "xai.batch_finalized" and line.get("batch_id") == batch_id for line in lines)

    assert wait_until(finalized, what="the finalize log line") == 1
    inbox = wait_until(lambda: [i for i in list_inbox(database, "default")
                                if i["event_type"] == "xai.completed" and i["payload"]["explanation_id"] == batch_id],
                       what="the xai.completed notification")
    assert len(inbox) == 1 and inbox[0]["payload"]["n_signals"] == 7 and inbox[0]["payload"]["n_failed"] == 1


def test_finalize_counts_members_from_their_explanations_not_the_fan_out_counters(
    workers, single, experiment, database,
):
    # The batch's counts come from its members' explanations, whatever the fan-out's counters say.
    from actors.platform.fanout import fanout_store
    from actors.store.explanations import create_batch
    from actors.xai import finalize_explain_batch

    signal, job = single
    members = [{"signal": signal, "job_id": job.message_id, "explanation_id": job.result["explanation_id"]},
               {"signal": _signal(experiment, record=1), "job_id": "never-sent", "explanation_id": "never-written"}]
    batch_id, fanout_id = "xb-lagging-counters", "xai-xb-lagging-counters"
    create_batch(database, batch_id, "test-job", fanout_id=fanout_id, experiment_id=experiment["experiment_id"],
                 method="gradcam", params={}, members=members)
    fanout_store().create(fanout_id, kind="xai_batch", owner_id=batch_id, total=2, finalize=None)  # nothing counted
    _, finalized = _run(finalize_explain_batch, batch_id=batch_id, fanout_id=fanout_id)
    assert finalized.state == "succeeded", finalized.error_message
    batch = get_batch(database, batch_id)
    assert (batch["status"], batch["done"], batch["failed"]) == ("completed", 1, 1)
    assert [link["status"] for link in batch["links"]] == ["completed", "failed"]


def test_bad_requests_are_refused_at_once_and_never_retried(workers, experiment, pending_experiment, database):
    def one(**changes: Any) -> dict[str, Any]:
        return {"experiment_id": experiment["experiment_id"], "signal": _signal(experiment, record=0),
                "method": "gradcam", **changes}

    def many(**changes: Any) -> dict[str, Any]:
        return {"experiment_id": experiment["experiment_id"], "signals": [_signal(experiment, record=0)],
                "method": "gradcam", **changes}

    refused_on_send = [
        (explain_signal, one(method="saliency"), "method: Input should be 'shap'"),
        (explain_signal, one(method="integrated_gradients", params={"n_steps": 0}),
         "'n_steps' of method 'integrated_gradients' must be in [1"),
        (explain_signal, one(params={"steps": 3}), "unknown parameter(s) steps"),
        (explain_batch, many(method="lime", params={"n_samples": 1}), "'n_samples' of method 'lime' must be in [10"),
    ]
    for actor, kwargs, reason in refused_on_send:
        with pytest.raises(PayloadInvalid) as refused:
            actor.send(**kwargs)
        assert reason in str(refused.value)
    cases = [
        (explain_signal, one(experiment_id=pending_experiment), "is pending, not completed"),
        (explain_signal, one(signal=_signal(experiment, record=3)), "record index 3 is out of range: split 'test'"),
        (explain_batch, many(experiment_id=pending_experiment), "is pending, not completed"),
        (explain_batch, many(signals=[_signal(experiment, record=0)] * 2), "the same signal more than once"),
    ]
    messages = [actor.send(**kwargs) for actor, kwargs, _ in cases]
    for message, (_, _, reason) in zip(messages, cases):
        job = wait_for_job(message.message_id, timeout_s=60)
        assert (job.state, job.error_type, job.attempts) == ("failed", "InvalidInput", 1), job.error_message
        assert reason in job.error_message


def test_batch_selected_one_per_class_explains_a_record_of_every_class(workers, experiment, database):
    from pipeline.datasets.hdf5 import read_labels

    # Given a test split stored ordered by class, when a batch selects one record per class
    select = {"dataset_id": experiment["dataset_id"], "split": "test", "per_class": 1, "window": 2}
    _, job = _run(explain_batch, experiment_id=experiment["experiment_id"], select=select,
                  method="integrated_gradients", params=IG)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    batch = wait_until(lambda: (b := get_batch(database, job.result["batch_id"]))["status"] != "running" and b,
                       timeout=120, what="the selected batch to be finalized")
    # Then each of the dataset's 3 classes is explained once, not 3 records of the first class
    labels = read_labels(experiment["dataset"]["path"], "test")
    explained = [link["signal"] for link in batch["links"]]
    assert sorted(labels[s["record"]] for s in explained) == sorted(set(labels.tolist())) and len(explained) == 3
    assert all(s["window"] == 2 for s in explained) and (batch["done"], batch["failed"]) == (3, 0)


def test_a_batch_with_both_signals_and_a_selection_is_refused_at_send(experiment):
    from actors.platform.errors import PayloadInvalid

    with pytest.raises(PayloadInvalid, match="either 'signals' or 'select'"):
        explain_batch.send(experiment_id=experiment["experiment_id"], signals=[_signal(experiment, 0)],
                           select={"dataset_id": experiment["dataset_id"]}, method="gradcam")


def test_gradient_shap_on_a_worker_records_its_additivity_delta(workers, experiment):
    from pipeline.xai import load_explanation

    # Given the default sampling, when a worker explains a window with Gradient SHAP
    signal = _signal(experiment, record=1, window=0)
    _, job = _run(explain_signal, experiment_id=experiment["experiment_id"], signal=signal, method="shap",
                  params={"background_size": 16})
    assert job.state == "succeeded", (job.error_type, job.error_message)
    extra = job.result["summary"]["extra"]
    # Then the result carries the convergence delta, and it is what base + sum(attributions) misses by
    stored = load_explanation(artifact(job.result["npz_path"]))
    logit = _direct(experiment, signal, "integrated_gradients", IG).extra["f_x"]
    missed = abs(logit - extra["shap_base_value"] - stored.attributions.sum()) / abs(logit - extra["shap_base_value"])
    assert extra["shap_relative_delta"] == pytest.approx(missed, rel=1e-3, abs=1e-4)
    assert extra["shap_converged"] is True and extra["shap_relative_delta"] <= 0.05 and "warning" not in extra


def test_a_whole_record_is_explained_on_a_worker_with_its_windows_stitched(workers, experiment, database):
    from pipeline.xai import load_explanation

    signal = {**_signal(experiment, record=2), "window": "all"}
    _, job = _run(explain_signal, experiment_id=experiment["experiment_id"], signal=signal,
                  method="integrated_gradients", params=IG)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    result = job.result
    assert result["signal"] == signal and get_explanation(database, result["explanation_id"]) == result
    summary = result["summary"]
    assert summary["length"] == 5 * WINDOW_LENGTH
    assert summary["extra"]["window_edges"] == [i * WINDOW_LENGTH for i in range(5)]
    # Every stretch is its window explained for the record's (voted) class.
    stored = load_explanation(artifact(result["npz_path"])).attributions
    for index in (0, 4):
        alone = _direct_for_class(experiment, {**signal, "window": index}, summary["target_class"])
        assert _close(stored[index * WINDOW_LENGTH:(index + 1) * WINDOW_LENGTH], alone)
    assert Path(artifact(result["png_path"])).read_bytes()[:4] == b"\x89PNG"


def test_activation_maps_of_a_window_on_a_worker(workers, experiment):
    _, job = _run(explain_signal, experiment_id=experiment["experiment_id"], signal=_signal(experiment, record=0),
                  method="activations", params={"max_channels": 4})
    assert job.state == "succeeded", (job.error_type, job.error_message)
    summary = job.result["summary"]
    layers = summary["layers"]
    assert summary["kind"] == "activations" and layers and all(layer["channels"] >= 1 for layer in layers)
    with np.load(artifact(job.result["npz_path"]), allow_pickle=False) as saved:
        assert [saved[f"layer_{i}"].shape for i in range(len(layers))] == [(l["channels"], l["length"]) for l in layers]
    assert Path(artifact(job.result["png_path"])).read_bytes()[:4] == b"\x89PNG"
    # A whole record has no single activation map: refused when it is sent.
    from actors.platform.errors import PayloadInvalid

    with pytest.raises(PayloadInvalid, match="activation maps are drawn for one window"):
        explain_signal.send(experiment_id=experiment["experiment_id"],
                            signal={**_signal(experiment, record=0), "window": "all"}, method="activations")
    # A layer the model lacks is refused by the worker at once, never retried, naming the layers it has.
    _, refused = _run(explain_signal, experiment_id=experiment["experiment_id"], signal=_signal(experiment, record=1),
                      method="activations", params={"layers": "no_such_layer"})
    assert (refused.state, refused.error_type, refused.attempts) == ("failed", "MethodNotApplicable", 1)
    assert "no_such_layer are not Conv1d layers of this model; Conv1d layers:" in refused.error_message


def _direct_for_class(experiment: dict[str, Any], signal: dict[str, Any], target: int) -> np.ndarray:
    """One window's Integrated Gradients for ``target``, computed here by the pipeline alone."""
    from pipeline.datasets.hdf5 import read_split
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.xai import explain

    model, meta = load_checkpoint(experiment["model_path"])
    rows = read_split(experiment["dataset"]["path"], signal["split"], slice(signal["record"], signal["record"] + 1))
    window = rows.signals[0].reshape(-1, WINDOW_LENGTH)[signal["window"]]
    return explain(model, meta["model_key"], window, "integrated_gradients", IG, class_index=target).attributions


def _close(stored: np.ndarray, expected: np.ndarray) -> bool:
    return np.allclose(stored, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_a_batch_link_says_when_gradient_shap_missed_its_additivity_tolerance(workers, experiment, database):
    # Given sampling too small for the tolerance asked for, the miss is reported, not hidden.
    params = {"background_size": 4, "n_samples": 4, "max_samples": 4, "tolerance": 1e-9}
    _, job = _run(explain_batch, experiment_id=experiment["experiment_id"],
                  signals=[_signal(experiment, record=0, window=4), _signal(experiment, record=1, window=4)],
                  method="shap", params=params)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    batch = wait_until(lambda: (b := get_batch(database, job.result["batch_id"]))["status"] != "running" and b,
                       timeout=120, what="the shap batch to be finalized")
    assert batch["done"] == 2
    assert all("additivity not reached" in link["warning"] for link in batch["links"])


def test_a_signal_normalised_unlike_the_models_training_data_is_refused_on_a_worker(workers, experiment, database,
                                                                                      tmp_path):
    import scipy.io

    from pipeline.datasets.matio import import_mat_files
    from tests.records import record_dataset

    # Given a dataset imported with per-record z-scores, and a model trained on raw generated signals
    # (one recording: splits are by recording, so all of its records are in the train split)
    scipy.io.savemat(tmp_path / "sain.mat", {"x": np.random.default_rng(3).normal(2.0, 0.5, 3 * 5 * WINDOW_LENGTH)})
    imported = import_mat_files(["sain.mat"], tmp_path, get_settings().artifact_root / "datasets", "ds-xai-per-record",
                                normalize="record", overwrite=True)
    record_dataset(database, "ds-xai-per-record", Path(imported.hdf5_path), n_records=imported.n_records,
                   class_counts=imported.class_counts, split_counts=imported.split_counts,
                   config_hash=imported.config_hash)
    # When a signal of it is explained with that model
    message = explain_signal.send(experiment_id=experiment["experiment_id"], method="gradcam",
                                  signal={"dataset_id": "ds-xai-per-record", "split": "train", "record": 0, "window": 0})
    # Then the worker refuses it: the model never saw normalised input, and un-normalising is not possible
    job = wait_for_job(message.message_id, timeout_s=60)
    assert (job.state, job.error_type, job.attempts) == ("failed", "InvalidInput", 1), job.error_message
    assert "trained on raw signals" in job.error_message
