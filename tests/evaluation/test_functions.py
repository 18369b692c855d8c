"""The evaluation and feature-set functions on their own: exact cases, seeds, shards, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import InvalidInput
from pipeline.evaluation.compare import pareto_front
from pipeline.evaluation.errors import error_analysis, severity_band
from pipeline.evaluation.robustness import add_awgn, robustness_in_groups, robustness_report
from pipeline.models.profile import count_macs

KEYS = ["a", "b", "c"]


def _errors_case():
    # Windows 0-3 of class a (one taken for b), 4-7 of class b (two taken for c), 8-9 of c.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    confidence = np.array([0.9, 0.9, 0.9, 0.6, 0.9, 0.9, 0.8, 0.7, 0.9, 0.9])
    probabilities = np.full((10, 3), 0.0)
    probabilities[np.arange(10), predicted] = confidence
    probabilities[np.arange(10), (predicted + 1) % 3] += 1 - confidence
    record_ids = np.arange(10) // 2
    metadata = [
        {"fault": "a", "severity_band": None, "speed_hz": 55.0, "load_percent": 30.0, "temperature_c": 40.0},
        {"fault": "sain", "speed_hz": 57.0, "load_percent": 40.0, "temperature_c": 45.0},
        {"severity": 0.5, "speed_hz": 60.0, "load_percent": 60.0, "temperature_c": 50.0},
        {"severity_band": "severe", "speed_hz": 63.0, "load_percent": 80.0},
        {"severity_band": "severe", "speed_hz": 65.0, "load_percent": 100.0, "temperature_c": 80.0},
    ]
    return probabilities, labels, record_ids, metadata


def test_error_analysis_counts_pairs_and_lists_confident_mistakes_first():
    probabilities, labels, record_ids, metadata = _errors_case()
    result = error_analysis(probabilities, labels, record_ids, KEYS, metadata)
    assert result["confusion"]["counts"] == [[3, 1, 0], [0, 2, 2], [0, 0, 2]]
    assert result["confusion"]["normalised"][1] == [0.0, 0.5, 0.5]
    assert result["confused_pairs"] == [
        {"true": "b", "predicted": "c", "count": 2, "fraction_of_true": 0.5},
        {"true": "a", "predicted": "b", "count": 1, "fraction_of_true": 0.25},
    ]
    mistakes = result["misclassified"]
    assert mistakes["total"] == 3
    assert [w["index"] for w in mistakes["windows"]] == [6, 7, 3]  # 0.8, 0.7, 0.6
    assert mistakes["windows"][0] == {"index": 6, "record_id": 3, "true": "b", "predicted": "c",
                                      "confidence": 0.8, "true_probability": 0.0}
    assert result["accuracy"] == 0.7
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_error_analysis_breaks_errors_down_by_severity_band_and_condition_bins():
    probabilities, labels, record_ids, metadata = _errors_case()
    result = error_analysis(probabilities, labels, record_ids, KEYS, metadata, condition_bins=2)
    assert result["by_severity"] == {
        "healthy": {"windows": 2, "errors": 1, "accuracy": 0.5},
        "mild": {"windows": 2, "errors": 0, "accuracy": 1.0},
        "severe": {"windows": 4, "errors": 2, "accuracy": 0.5},
        "unknown": {"windows": 2, "errors": 0, "accuracy": 1.0},
    }
    speed = result["by_condition"]["speed"]
    assert [(b["low"], b["high"], b["windows"], b["errors"]) for b in speed] == [(55.0, 60.0, 4, 1), (60.0, 65.0, 6, 2)]
    temperature = result["by_condition"]["temperature"]
    assert temperature[-1] == {"low": None, "high": None, "windows": 2, "errors": 2, "accuracy": 0.0}


def test_error_analysis_refuses_record_ids_beyond_the_split():
    probabilities, labels, record_ids, metadata = _errors_case()
    with pytest.raises(InvalidInput, match="do not belong to this dataset"):
        error_analysis(probabilities, labels, record_ids, KEYS, metadata[:2])


def test_severity_band_comes_from_the_record_or_its_severity_value():
    assert severity_band({"severity_band": "mild"}) == "mild"
    assert severity_band({"fault": "sain", "severity_band": None}) == "healthy"
    assert severity_band({"severity": 1.0}) == "severe"
    assert severity_band({"severity": float("nan")}) == "unknown"


def test_pareto_front_keeps_only_models_nothing_beats_on_both_counts():
    accuracy = [0.90, 0.95, 0.80, 0.95, 0.70]
    latency = [1.0, 3.0, 2.0, 4.0, 0.5]
    assert pareto_front(accuracy, latency) == [4, 0, 1]


def test_macs_are_counted_from_each_conv1d_and_linear_output():
    from torch import nn

    model = nn.Sequential(nn.Conv1d(1, 4, 5, stride=2), nn.ReLU(), nn.Conv1d(4, 8, 3, groups=2),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 3))
    out1 = (100 - 5) // 2 + 1  # 48
    out2 = out1 - 2  # 46
    expected = 4 * out1 * 1 * 5 + 8 * out2 * 2 * 3 + 3 * 8
    assert count_macs(model, 100) == expected
    assert model.training  # the count leaves the mode as it found it
    assert not any(m._forward_hooks for m in model.modules())


def test_awgn_has_the_requested_snr_against_each_windows_clean_rms():
    rng = np.random.default_rng(0)
    clean = np.vstack([np.sin(np.linspace(0, 200, 20_000)), 5 * np.sin(np.linspace(0, 90, 20_000))])
    noisy = add_awgn(clean, 10.0, rng)
    noise = noisy - clean
    snr = 10 * np.log10(np.mean(clean**2, axis=1) / np.mean(noise**2, axis=1))
    np.testing.assert_allclose(snr, [10.0, 10.0], atol=0.1)


def test_robustness_report_is_reproducible_and_falls_with_the_snr():
    t = np.arange(2048)
    labels = np.repeat([0, 1], 20)
    # Class 0 a slow tone (~41 zero crossings), class 1 a fast one (~205).
    windows = np.sin(2 * np.pi * np.where(labels == 0, 0.01, 0.05)[:, None] * t + 0.3)

    def predict(x):  # counts zero crossings: strong noise adds many, so slow tones look fast
        fast = (np.abs(np.diff(np.sign(x), axis=1)) > 0).sum(axis=1) > 120
        return np.stack([~fast, fast], axis=1).astype(float)

    first = robustness_report(predict, windows, labels, ["a", "b"], (40, 5), seed=7)
    assert first == robustness_report(predict, windows, labels, ["a", "b"], (40, 5), seed=7)
    assert first["clean"]["accuracy"] == 1.0
    assert first["levels"][0]["accuracy"] == pytest.approx(1.0, abs=0.05)
    assert first["levels"][1]["accuracy"] < first["clean"]["accuracy"]
    assert first["levels"][1]["by_class"]["a"] < first["levels"][1]["by_class"]["b"] == 1.0
    assert first["levels"][1]["drop"] == first["clean"]["accuracy"] - first["levels"][1]["accuracy"]
    with pytest.raises(InvalidInput):
        robustness_report(predict, windows, labels, ["a", "b"], ())
    # Read a few records at a time (a test split larger than memory), the figures are the same:
    # each level's noise runs on from group to group
    groups = [(windows[i:i + 7], labels[i:i + 7], None) for i in range(0, len(labels), 7)]
    assert robustness_in_groups(lambda x, _: predict(x), groups, ["a", "b"], (40, 5), seed=7) == first


def test_sharded_extraction_merged_in_plan_order_equals_one_whole_extraction(tiny_dataset):
    from pipeline.evaluation.feature_sets import (
        extract_dataset_features,
        extract_shard,
        merge_parts,
        plan_shards,
    )
    from pipeline.features import feature_names

    path, counts = tiny_dataset["path"], tiny_dataset["split_counts"]
    whole = extract_dataset_features(path, counts, ["time", "envelope"])
    shards = plan_shards(counts, 2)
    assert [(s.split, s.start, s.stop) for s in shards] == [
        ("train", 0, 2), ("train", 2, 4), ("train", 4, 6), ("val", 0, 2), ("val", 2, 3), ("test", 0, 2), ("test", 2, 3)]
    merged = merge_parts([extract_shard(path, s, ["time", "envelope"]) for s in shards])
    for name in ("values", "labels", "splits", "record_ids"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
    assert whole.values.shape == (5 * 12, len(feature_names(["time", "envelope"]))) and merged.names == whole.names
    with pytest.raises(InvalidInput, match="records_per_shard"):
        plan_shards(counts, 0)


def test_a_saved_selection_trains_a_classical_model_on_just_its_features(tiny_dataset, tmp_path):
    from pipeline.evaluation.feature_sets import (
        extract_dataset_features,
        load_selection,
        save_selection,
        selection_features_fn,
    )
    from pipeline.features.selection import select_features
    from pipeline.training import load_training_data
    from pipeline.training.classical import train_classical

    features = extract_dataset_features(tiny_dataset["path"], tiny_dataset["split_counts"])
    X, y = features.split("train")
    chosen = select_features(X, y, features.names, "select_k_best", k=4)
    selection = load_selection(save_selection(tmp_path / "selection.json", chosen, features.names, {}))
    assert selection["names"] == chosen.names
    features_fn = selection_features_fn(selection)
    data = load_training_data(tiny_dataset["path"])
    computed = features_fn(data.test.windows, lambda *a, **k: None, lambda: False)
    np.testing.assert_allclose(computed, features.values[features.splits == "test"][:, chosen.indices])
    result = train_classical("rf", {"n_estimators": 10, "k_features": 4}, data, features_fn, tmp_path / "rf")
    assert result.test["window_accuracy"] > 0.6


def test_merging_shard_parts_names_the_shards_whose_parts_are_missing(tiny_dataset, tmp_path):
    from pipeline.errors import DatasetFileError
    from pipeline.evaluation.feature_sets import Shard, extract_shard, load_parts, save_parts

    part = extract_shard(tiny_dataset["path"], Shard("test", 0, 1), ["time"])
    saved = save_parts(tmp_path / "shard-0.npz", part, {})
    assert saved["n_windows"] == 5 and saved["split_counts"] == {"train": 0, "val": 0, "test": 5}
    with pytest.raises(DatasetFileError, match=r"shard part\(s\) \[1, 2\] of 3 are missing"):
        load_parts([tmp_path / "shard-0.npz", tmp_path / "shard-1.npz", tmp_path / "shard-2.npz"])
    np.testing.assert_array_equal(load_parts([tmp_path / "shard-0.npz"]).values, part.values)
