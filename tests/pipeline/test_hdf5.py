"""The dataset file: split, writer, readers, validation and whole-dataset generation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.datasets import (
    DatasetWriter,
    dataset_info,
    generate_dataset,
    read_split,
    read_windows,
    split_indices,
    validate_dataset_file,
)
from pipeline.datasets.hdf5 import dataset_attrs
from pipeline.domain import CLASS_KEYS, RECORD_LENGTH, WINDOW_LENGTH
from pipeline.errors import DatasetFileError, InvalidInput, StopRequested
from pipeline.signals import GENERATOR_VERSION, GeneratorConfig, generate_record

CONFIG = GeneratorConfig(fault_types=("sain", "jeu", "oilwhirl"), records_per_class=4, seed=5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("datasets")
    return Path(generate_dataset(CONFIG, out, "ds-1", workers=1).hdf5_path)


@pytest.fixture
def copy(dataset, tmp_path) -> Path:
    target = tmp_path / "copy.h5"
    shutil.copyfile(dataset, target)
    return target


# ---- split ----------------------------------------------------------------------------


def test_split_indices_is_stratified_disjoint_and_complete():
    labels = np.repeat([0, 3, 7], [10, 4, 3])
    splits = split_indices(labels, (0.7, 0.15, 0.15), seed=1)
    joined = np.concatenate(list(splits.values()))
    assert sorted(joined.tolist()) == list(range(labels.size))
    for members in splits.values():
        assert set(labels[members]) == {0, 3, 7}  # every class in every split
    assert np.bincount(labels[splits["train"]])[0] == 7
    again = split_indices(labels, (0.7, 0.15, 0.15), seed=1)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)


def test_split_indices_refuses_ratios_not_summing_to_one():
    with pytest.raises(InvalidInput, match="must sum to 1"):
        split_indices([0, 1], (0.5, 0.5, 0.5), seed=0)


# ---- generation and reading -----------------------------------------------------------


def test_generate_dataset_writes_the_documented_layout(dataset):
    info = validate_dataset_file(dataset)
    attrs = info["attrs"]
    assert attrs["num_classes"] == 11 and attrs["class_keys"] == list(CLASS_KEYS)
    assert attrs["sampling_rate"] == 20480 and attrs["record_length"] == RECORD_LENGTH
    assert attrs["split_ratios"] == pytest.approx([0.7, 0.15, 0.15])
    assert attrs["seed"] == 5 and attrs["source"] == "generator"
    assert attrs["generator_version"] == GENERATOR_VERSION
    assert GeneratorConfig.from_dict(attrs["generator_config"]) == CONFIG
    assert attrs["generator_config_hash"] == CONFIG.config_hash()
    assert info["n_records"] == 12
    assert info["class_counts"] == {"sain": 4, "jeu": 4, "oilwhirl": 4}
    assert all(len(info["split_class_counts"][s]) == 3 for s in ("train", "val", "test"))
    with h5py.File(dataset) as handle:
        signals = handle["train/signals"]
        assert signals.chunks == (1, RECORD_LENGTH) and signals.compression == "gzip"


def test_read_split_returns_the_generated_records(dataset):
    arrays = read_split(dataset, "train")
    assert arrays.signals.dtype == np.float32 and arrays.labels.dtype == np.int64
    for row, meta in enumerate(arrays.metadata):
        record = generate_record(CONFIG, meta["index"])
        assert np.array_equal(arrays.signals[row], record.signal)
        assert arrays.labels[row] == record.label
        assert arrays.severities[row] == pytest.approx(record.severity)
    part = read_split(dataset, "train", slice(1, 3))
    assert np.array_equal(part.signals, arrays.signals[1:3])


def test_a_raw_dataset_holds_the_same_records_uncompressed_and_trains_from_the_file(dataset, tmp_path):
    from pipeline.training import load_training_data

    raw = Path(generate_dataset(CONFIG, tmp_path, "ds-raw", workers=1, compression="none").hdf5_path)
    validate_dataset_file(raw)
    with h5py.File(raw) as stored, h5py.File(dataset) as zipped:
        assert stored["train/signals"].compression is None and zipped["train/signals"].compression == "gzip"
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(read_split(raw, split).signals, read_split(dataset, split).signals)
    # Read a record at a time (straight from the file, no inflating), the windows are the same
    stored = load_training_data(raw, memory_budget_bytes=1)
    np.testing.assert_array_equal(stored.val.windows, load_training_data(dataset).val.windows)
    with pytest.raises(InvalidInput, match="compression must be"):
        generate_dataset(CONFIG, tmp_path, "ds-lz4", workers=1, compression="lz4")


def test_read_windows_reshapes_records_into_five_windows(dataset):
    windows, labels, record_ids = read_windows(dataset, "val")
    arrays = read_split(dataset, "val")
    n = arrays.labels.size
    assert windows.shape == (n * 5, WINDOW_LENGTH)
    assert np.shares_memory(windows, windows.base)  # a view, not a copy
    assert np.array_equal(windows[5:10].reshape(-1), arrays.signals[1])
    assert np.array_equal(labels, np.repeat(arrays.labels, 5))
    assert np.array_equal(record_ids, np.repeat(np.arange(n), 5))


def test_generate_dataset_reports_progress_once_per_record(tmp_path):
    seen = []
    generate_dataset(CONFIG, tmp_path, "ds-progress", workers=1,
                     on_progress=lambda f, status="", **m: seen.append(f))
    assert len(seen) == CONFIG.n_records and seen[-1] == 1.0


def test_generate_dataset_stopped_leaves_no_file(tmp_path):
    calls = iter(range(100))
    with pytest.raises(StopRequested):
        generate_dataset(CONFIG, tmp_path, "ds-stop", formats=("hdf5", "mat"), workers=1,
                         should_stop=lambda: next(calls) >= 3)
    assert list(tmp_path.iterdir()) == []


def test_generate_dataset_refuses_an_existing_file(dataset):
    with pytest.raises(DatasetFileError, match="already exists"):
        generate_dataset(CONFIG, dataset.parent, "ds-1", workers=1)


def test_generate_dataset_refuses_an_unsafe_dataset_id(tmp_path):
    with pytest.raises(InvalidInput, match="dataset id"):
        generate_dataset(CONFIG, tmp_path, "../escape", workers=1)


def test_dataset_writer_removes_an_incomplete_file(tmp_path):
    attrs = dataset_attrs(source="generator", split_ratios=(0.7, 0.15, 0.15), seed=0,
                          generator_config={}, generator_config_hash="x",
                          generator_version="v")
    path = tmp_path / "incomplete.h5"
    sizes = {"train": 2, "val": 0, "test": 0}
    with pytest.raises(DatasetFileError, match="incomplete"), \
            DatasetWriter(path, attrs, sizes) as writer:
        writer.write("train", 0, generate_record(CONFIG, 0))
    assert list(tmp_path.iterdir()) == []


# ---- validation failures --------------------------------------------------------------


def test_validate_refuses_a_missing_file(tmp_path):
    with pytest.raises(DatasetFileError, match="not found"):
        validate_dataset_file(tmp_path / "absent.h5")


def test_validate_refuses_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("signals, labels\n" * 100)
    with pytest.raises(DatasetFileError, match="not an HDF5 file"):
        validate_dataset_file(path)


def test_validate_refuses_a_truncated_file(copy):
    data = copy.read_bytes()
    copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFileError, match="truncated"):
        validate_dataset_file(copy)


def _edit(path: Path, edit) -> None:
    with h5py.File(path, "r+") as handle:
        edit(handle)


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.__delitem__("val"), "missing group 'val'"),
    (lambda h: h.__delitem__("test/severities"), "missing dataset test/severities"),
    (lambda h: h.attrs.__delitem__("class_keys"), "missing root attributes: class_keys"),
])
def test_validate_names_what_is_missing(copy, edit, message):
    _edit(copy, edit)
    with pytest.raises(DatasetFileError, match=message):
        validate_dataset_file(copy)


def _replace(handle, name, data):
    del handle[name]
    handle[name] = data


def test_validate_refuses_a_wrong_dtype(copy):
    _edit(copy, lambda h: _replace(h, "train/labels", h["train/labels"][...].astype(np.int32)))
    with pytest.raises(DatasetFileError, match="train/labels has dtype int32, expected int64"):
        validate_dataset_file(copy)


def test_validate_refuses_a_wrong_shape(copy):
    _edit(copy, lambda h: _replace(h, "val/signals", np.zeros((2, 1000), np.float32)))
    with pytest.raises(DatasetFileError, match=r"val/signals has shape \(2, 1000\)"):
        validate_dataset_file(copy)


def test_validate_refuses_labels_out_of_range(copy):
    def corrupt(handle):
        handle["test/labels"][0] = 42
    _edit(copy, corrupt)
    with pytest.raises(DatasetFileError, match="holds 42, outside"):
        validate_dataset_file(copy)


def test_dataset_info_is_json_safe(dataset):
    info = dataset_info(dataset)
    assert json.loads(json.dumps(info)) == info
