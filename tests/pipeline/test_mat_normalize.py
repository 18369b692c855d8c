"""MAT import with z-score normalisation, and model input conformed to the training data's rule."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from pipeline.datasets import import_mat_files, read_split
from pipeline.datasets.hdf5 import SPLITS, dataset_info, dataset_normalization_rule
from pipeline.domain import RECORD_LENGTH, WINDOW_LENGTH
from pipeline.errors import InvalidInput
from pipeline.signals.normalize import conform_windows, zscore


def _raw(seed: int, records: int = 3) -> np.ndarray:
    """A vibration with an offset and a gain, and a level that moves from record to record."""
    rng = np.random.default_rng(seed)
    t = np.arange(records * RECORD_LENGTH) / 20_480
    drift = np.repeat(np.arange(records, dtype=np.float64), RECORD_LENGTH)
    return 3.0 + drift + 2.0 * np.sin(2 * np.pi * 60 * t) + 0.5 * rng.standard_normal(t.size)


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "root"
    folder.mkdir()
    scipy.io.savemat(folder / "a.mat", {"x": _raw(1), "label": "sain"})
    scipy.io.savemat(folder / "b.mat", {"x": 10 * _raw(2), "label": "jeu"})
    scipy.io.savemat(folder / "flat.mat", {"x": np.full(2 * RECORD_LENGTH, 0.25), "label": "sain"})
    return folder


def _records_by_file(path: str) -> dict[str, list[tuple[np.ndarray, dict]]]:
    by_file: dict[str, list[tuple[np.ndarray, dict]]] = {}
    for split in SPLITS:
        arrays = read_split(path, split)
        for signal, meta in zip(arrays.signals, arrays.metadata):
            by_file.setdefault(meta["source_file"], []).append((signal, meta))
    return by_file


def test_import_normalised_per_file_has_each_file_at_mean_0_std_1_and_records_the_rule(root, tmp_path):
    result = import_mat_files([str(root)], root, tmp_path / "out", "norm-file", normalize="file")
    assert [f["path"] for f in result.failures] == ["flat.mat"]
    assert "constant" in result.failures[0]["reason"]
    by_file = _records_by_file(result.hdf5_path)
    assert sorted(by_file) == ["a.mat", "b.mat"]
    config = dataset_info(result.hdf5_path)["attrs"]["generator_config"]
    assert config["normalization"]["rule"] == "file"
    for name, records in by_file.items():
        samples = np.concatenate([s for s, _ in records]).astype(np.float64)
        assert abs(samples.mean()) < 1e-4 and abs(samples.std() - 1) < 1e-4
        raw = scipy.io.loadmat(root / name)["x"].ravel()
        recorded = config["normalization"]["files"][name]
        assert recorded == pytest.approx({"mean": raw.mean(), "std": raw.std()}, rel=1e-6)
        assert all(m["normalization"] == {"rule": "file", **recorded} for _, m in records)
        # Per file, not per record: the records' own levels still differ (the drift).
        assert np.ptp([s.mean() for s, _ in records]) > 0.1
    assert dataset_normalization_rule(result.hdf5_path) == "file"


def test_import_normalised_per_record_has_each_record_at_mean_0_std_1(root, tmp_path):
    result = import_mat_files([str(root)], root, tmp_path / "out", "norm-rec", normalize="record")
    assert [f["path"] for f in result.failures] == ["flat.mat"]
    assert "record 0" in result.failures[0]["reason"] and "constant" in result.failures[0]["reason"]
    assert result.n_records == 6
    for records in _records_by_file(result.hdf5_path).values():
        for signal, meta in records:
            assert abs(signal.mean()) < 1e-4 and abs(signal.std() - 1) < 1e-4
            assert meta["normalization"]["rule"] == "record" and meta["normalization"]["std"] > 0
    assert dataset_normalization_rule(result.hdf5_path) == "record"


def test_import_without_normalisation_keeps_the_raw_signal(root, tmp_path):
    result = import_mat_files([str(root / "a.mat")], root, tmp_path / "out", "raw")
    signals = np.concatenate([read_split(result.hdf5_path, s).signals for s in SPLITS])
    assert signals.mean() > 3.0
    assert dataset_normalization_rule(result.hdf5_path) == "none"


def test_import_refuses_an_unknown_rule(root, tmp_path):
    with pytest.raises(InvalidInput, match="unknown normalisation 'global'"):
        import_mat_files([str(root)], root, tmp_path / "out", "bad", normalize="global")


def _windows(path: str, name: str) -> np.ndarray:
    """A file's records in segment order, as 1 s windows."""
    records = sorted(_records_by_file(path)[name], key=lambda r: r[1]["segment"])
    return np.stack([s for s, _ in records]).reshape(-1, WINDOW_LENGTH)


def test_raw_outside_data_is_given_to_a_per_record_model_as_its_training_data_was(root, tmp_path):
    # Given a model trained on a per-record dataset, and the same file imported raw elsewhere
    trained = import_mat_files([str(root)], root, tmp_path / "out", "trained", normalize="record")
    outside = import_mat_files([str(root / "b.mat")], root, tmp_path / "out", "outside")
    model_rule = dataset_normalization_rule(trained.hdf5_path)
    raw = _windows(outside.hdf5_path, "b.mat")
    # When its raw windows are conformed to the model's rule
    given = conform_windows(raw, model_rule=model_rule, data_rule=dataset_normalization_rule(outside.hdf5_path))
    # Then the model sees what it was trained on (skipping it would leave b's 10x gain and offset)
    np.testing.assert_allclose(given, _windows(trained.hdf5_path, "b.mat"), atol=1e-5)
    # And data from the training dataset itself is passed through untouched, never normalised twice
    own = _windows(trained.hdf5_path, "a.mat")
    assert conform_windows(own, model_rule="record", data_rule="record") is own


def test_a_per_file_model_takes_per_file_data_untouched_and_refuses_other_data(root, tmp_path):
    trained = import_mat_files([str(root)], root, tmp_path / "out", "pf", normalize="file")
    own = _windows(trained.hdf5_path, "a.mat")
    given = conform_windows(own, model_rule="file", data_rule="file")
    # Re-normalising per record would move each record's level (the drift): it must not happen.
    np.testing.assert_array_equal(given, own)
    with pytest.raises(InvalidInput, match="per-file statistics need the whole file"):
        conform_windows(own, model_rule="file", data_rule="none")
    with pytest.raises(InvalidInput, match="trained on raw signals"):
        conform_windows(own, model_rule="none", data_rule="record")


def test_per_record_conforming_needs_whole_records_and_refuses_a_flat_one():
    with pytest.raises(InvalidInput, match="whole records"):
        conform_windows(np.ones((3, 8)), model_rule="record", data_rule="none", windows_per_record=5)
    with pytest.raises(InvalidInput, match="record 1 is constant"):
        conform_windows(np.r_[np.random.default_rng(0).normal(size=(5, 8)), np.ones((5, 8))],
                        model_rule="record", data_rule="none", windows_per_record=5)


def test_zscore_of_the_same_signal_is_the_same():
    signal = np.random.default_rng(4).normal(2.0, 3.0, 1000)
    a, b = zscore(signal), zscore(signal)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]
