"""The planned import (MAT headers first, each file's records straight to their split) writes
exactly what the staged import writes, and falls back to it when a file's data breaks its plan."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from pipeline.datasets import importer
from pipeline.datasets.hdf5 import SPLITS, validate_dataset_file
from pipeline.datasets.importer import RecordingLayout, import_recordings
from pipeline.datasets.labels import LabelRule
from pipeline.datasets.matread import resample, resampled_length
from tests.recordings.rig import FOLDERS, write_rig_mat_files

FS = 12_000
PATTERNS = {f"{folder}/*": kind for kind, folder in FOLDERS.items()}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    root = tmp_path_factory.mktemp("rig")
    write_rig_mat_files(root, recordings_per_class=3, seconds=3.0)
    return root


def _refuse(*args: object) -> None:
    raise AssertionError("the import fell back to staging")


def _contents(path) -> dict:
    """Every split's arrays and the file's attributes, as plain values."""
    with h5py.File(path, "r") as handle:
        found = {name: handle.attrs[name] for name in handle.attrs}
        for split in SPLITS:
            for name in ("signals", "labels", "severities", "metadata"):
                found[f"{split}/{name}"] = handle[split][name][...]
    return found


def _assert_same(a: dict, b: dict, skip: tuple[str, ...] = ()) -> None:
    assert set(a) == set(b)
    for key in a:
        if key not in skip:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(("rate", "normalize"), [(None, "none"), (10_000, "file")])
def test_the_planned_import_writes_what_the_staged_import_writes(rig, tmp_path, monkeypatch, rate, normalize):
    # 12 kHz to 10 kHz: the planned lengths must round as scipy's resampler does.
    layout = RecordingLayout(channels=("*_DE_time", "*_FE_time"), sampling_rate=rate, source_fs=FS,
                             record_seconds=1.3)
    options = {"labels": LabelRule(patterns=PATTERNS), "layout": layout, "normalize": normalize,
               "suffixes": (".mat",)}
    with monkeypatch.context() as patch:  # the planned way alone: no staging to fall back on
        patch.setattr(importer, "_import_staged", _refuse)
        planned = import_recordings([rig], rig, tmp_path / "planned", "rig", **options)
    monkeypatch.setattr(importer, "_import_planned", lambda request: None)  # force the staged way
    staged = import_recordings([rig], rig, tmp_path / "staged", "rig", **options)
    assert planned.failures == staged.failures == []
    assert planned.split_counts == staged.split_counts and planned.n_records == 12 * 2
    assert planned.config_hash == staged.config_hash
    _assert_same(_contents(planned.hdf5_path), _contents(staged.hdf5_path))
    validate_dataset_file(planned.hdf5_path)


def test_a_file_whose_data_breaks_its_plan_is_listed_and_the_rest_import_as_without_it(rig, tmp_path):
    # Its headers are sound (the plan sizes the dataset with it); a NaN shows only on the full read.
    bad = rig / FOLDERS["ball"] / "nan.mat"
    samples = np.ones((3 * FS, 1))
    samples[FS] = np.nan
    scipy.io.savemat(bad, {"X900_DE_time": samples, "X900_FE_time": samples})
    try:
        layout = RecordingLayout(channels=("*_DE_time", "*_FE_time"), sampling_rate=None, source_fs=FS,
                                 record_seconds=1.0)
        options = {"labels": LabelRule(patterns=PATTERNS), "layout": layout, "suffixes": (".mat",)}
        reported: list[float] = []
        with_bad = import_recordings([rig], rig, tmp_path / "a", "rig", **options,
                                     on_progress=lambda fraction, status="", **_: reported.append(fraction))
        bad.unlink()
        without = import_recordings([rig], rig, tmp_path / "b", "rig", **options)
    finally:
        bad.unlink(missing_ok=True)
    assert [f["path"] for f in with_bad.failures] == [f"{FOLDERS['ball']}/nan.mat"]
    assert "NaN" in with_bad.failures[0]["reason"]
    assert with_bad.split_counts == without.split_counts
    # Same records in the same places; only the config's file list differs.
    _assert_same(_contents(with_bad.hdf5_path), _contents(without.hdf5_path),
                 skip=("generator_config", "generator_config_hash"))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["rig.h5"]  # no partial, no staging
    # Starting over the staged way, the progress held where the planned pass had got to.
    assert reported == sorted(reported) and reported[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(("fs", "rate"), [(12_000, 10_000), (48_000, 20_480), (12_000, 20_480), (44_100, 12_000)])
@pytest.mark.parametrize("samples", [1, 997, 12_001])
def test_the_planned_length_is_the_resampled_length(fs, rate, samples):
    assert resampled_length(samples, fs, rate) == resample(np.zeros((2, samples)), fs, rate).shape[-1]


def test_with_the_native_rate_kept_a_file_at_another_rate_is_refused_not_resampled(rig, tmp_path):
    other = rig / FOLDERS["normal"] / "fast.mat"
    samples = np.random.default_rng(5).standard_normal((4 * 48_000, 1))
    scipy.io.savemat(other, {"X901_DE_time": samples, "X901_FE_time": samples, "fs": 48_000.0})
    try:
        result = import_recordings([rig], rig, tmp_path, "rig", labels=LabelRule(patterns=PATTERNS),
                                   layout=RecordingLayout(channels=("*_DE_time", "*_FE_time"), sampling_rate=None,
                                                          source_fs=FS, record_seconds=1.0),
                                   suffixes=(".mat",))
    finally:
        other.unlink()
    assert [f["path"] for f in result.failures] == [f"{FOLDERS['normal']}/fast.mat"]
    assert "recorded at 48000 Hz" in result.failures[0]["reason"]
    assert result.n_records == 12 * 3
