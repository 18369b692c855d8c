"""Training from a dataset larger than the memory budget: a split read a group of records at a
time gives the in-memory batches when it fits, every window once an epoch when it does not,
resumes across a kill, and keeps memory bounded while training."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline.datasets.geometry import DatasetGeometry
from pipeline.datasets.hdf5 import DatasetWriter, dataset_attrs
from pipeline.errors import StopRequested
from pipeline.signals.generator import Record
from pipeline.training import load_training_data
from pipeline.training.data import StoredSplit, TrainingData, iterate_batches
from pipeline.training.loop import train_deep

torch.set_num_threads(1)

WINDOW, PER_RECORD = 1024, 4
GEOMETRY = DatasetGeometry(class_keys=("a", "b", "c"), sampling_rate=WINDOW, record_length=WINDOW * PER_RECORD,
                           window_length=WINDOW)
FAST = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "scheduler": "none", "seed": 0}
ARGS = {"width": 4, "depth": 1}


def write_dataset(path, records_per_split: dict[str, int], seed: int = 0, compress: bool = True) -> None:
    """Three classes of noisy sines (stored class by class, as datasets are); a window's first
    sample is its position in the split, so the tests can tell windows apart."""
    rng = np.random.default_rng(seed)
    attrs = dataset_attrs(source="generator", split_ratios=(0.7, 0.15, 0.15), seed=seed, generator_config={},
                          generator_config_hash="test", generator_version="test", geometry=GEOMETRY)
    t = np.arange(WINDOW * PER_RECORD) / WINDOW
    with DatasetWriter(path, attrs, records_per_split, compress=compress) as writer:
        for split, n in records_per_split.items():
            for position in range(n):
                label = position * 3 // n
                signal = np.sin(2 * np.pi * (5, 20, 60)[label] * t) + 0.3 * rng.standard_normal(t.size)
                signal[::WINDOW] = position * PER_RECORD + np.arange(PER_RECORD)
                writer.write(split, position, Record(signal.astype(np.float32), label, "abc"[label], 0.0, {}))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("stored") / "ds.h5"
    write_dataset(path, {"train": 30, "val": 9, "test": 9})
    return path


def _ids(batches) -> list[np.ndarray]:
    return [x[:, 0, 0].numpy().astype(np.int64) for x, _ in batches]


def test_a_split_that_fits_gives_exactly_the_in_memory_batches(dataset):
    memory = load_training_data(dataset)
    stored = StoredSplit(dataset, "train", GEOMETRY, budget_bytes=1 << 30)
    for seed in (0, 7):
        expected = list(iterate_batches(memory.train, 8, shuffle=True, seed=seed, drop_single=True))
        got = list(iterate_batches(stored, 8, shuffle=True, seed=seed, drop_single=True))
        assert len(got) == len(expected)
        for (x, y), (ex, ey) in zip(got, expected):
            assert torch.equal(x, ex) and torch.equal(y, ey)


def test_a_small_budget_reads_every_window_once_an_epoch_in_mixed_reproducible_batches(dataset):
    record_bytes = 4 * WINDOW * PER_RECORD
    stored = StoredSplit(dataset, "train", GEOMETRY, budget_bytes=3 * 4 * record_bytes)  # 4 records a group
    assert stored.records_per_group == 4
    first = _ids(iterate_batches(stored, 8, shuffle=True, seed=3))
    assert sorted(np.concatenate(first).tolist()) == list(range(len(stored)))
    assert all(len(ids) == 8 for ids in first[:-1])  # only the epoch's last batch is short
    assert [ids.tolist() for ids in _ids(iterate_batches(stored, 8, shuffle=True, seed=3))] == \
        [ids.tolist() for ids in first]
    other = _ids(iterate_batches(stored, 8, shuffle=True, seed=4))
    assert [ids.tolist() for ids in other] != [ids.tolist() for ids in first]
    labels = [set(y.tolist()) for _, y in iterate_batches(stored, 8, shuffle=True, seed=3)]
    assert sum(len(found) > 1 for found in labels) > len(labels) // 2  # groups mix the classes


def test_load_training_data_reads_into_memory_only_what_fits_the_budget(dataset):
    assert not load_training_data(dataset, memory_budget_bytes=1 << 30).stored
    data = load_training_data(dataset, memory_budget_bytes=64 << 10)
    assert data.stored and isinstance(data.val, StoredSplit)
    assert np.array_equal(data.test.windows, load_training_data(dataset).test.windows)


def _stored(path, budget: int) -> TrainingData:
    return TrainingData(geometry=GEOMETRY, **{s: StoredSplit(path, s, GEOMETRY, budget) for s in ("train", "val", "test")})


def test_training_on_a_stored_split_matches_memory_when_it_fits_and_resumes_across_a_kill(dataset, tmp_path):
    memory = train_deep("cnn1d", ARGS, FAST, load_training_data(dataset), tmp_path / "memory")
    stored = train_deep("cnn1d", ARGS, FAST, _stored(dataset, 1 << 30), tmp_path / "stored")
    assert [h["train_loss"] for h in stored.history] == [h["train_loss"] for h in memory.history]
    assert stored.test == memory.test

    small = 3 * 4 * 4 * WINDOW * PER_RECORD
    straight = train_deep("cnn1d", ARGS, {**FAST, "epochs": 3}, _stored(dataset, small), tmp_path / "straight")
    seen: list = []
    with pytest.raises(StopRequested):
        train_deep("cnn1d", ARGS, {**FAST, "epochs": 3}, _stored(dataset, small), tmp_path / "killed",
                   should_stop=lambda: bool(seen), on_epoch=seen.append)
    resumed = train_deep("cnn1d", ARGS, {**FAST, "epochs": 3}, _stored(dataset, small), tmp_path / "killed")
    assert resumed.resumed_from_epoch == 1
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]


_TRAIN_ONE_EPOCH = """
import json, sys, torch
torch.set_num_threads(1)
from pipeline.training import load_training_data
from pipeline.training.loop import train_deep
budget = None if sys.argv[2] == "none" else int(sys.argv[2])
data = load_training_data(sys.argv[1], memory_budget_bytes=budget)
result = train_deep("cnn1d", {"width": 4, "depth": 1}, {"epochs": 1, "batch_size": 64, "scheduler": "none"},
                    data, sys.argv[3])
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"stored": data.stored, "peak_mb": peak_kb / 1024,
                  "windows": result.epochs_run and len(data.train)}))
"""


@pytest.mark.slow
def test_a_dataset_larger_than_a_tiny_budget_trains_with_bounded_memory(tmp_path):
    # Given a dataset of 96 MB of windows, stored raw so its reading costs no inflating
    path = tmp_path / "large.h5"
    write_dataset(path, {"train": 4096, "val": 1024, "test": 1024}, compress=False)

    def peak(budget: str) -> dict:
        run = subprocess.run([sys.executable, "-c", _TRAIN_ONE_EPOCH, str(path), budget, str(tmp_path / budget)],
                             check=True, capture_output=True, text=True)
        return json.loads(run.stdout.strip().splitlines()[-1])

    # When one epoch trains within a budget of 8 MB, and once with everything in memory
    bounded, loaded = peak(str(8 << 20)), peak("none")
    # Then the bounded run holds a few groups, not the dataset: its peak stays far below
    assert bounded["stored"] and not loaded["stored"]
    assert bounded["windows"] == loaded["windows"] == 4096 * PER_RECORD
    assert loaded["peak_mb"] - bounded["peak_mb"] > 60, (bounded, loaded)


def test_nas_candidates_and_campaign_scoring_read_a_stored_split_as_they_read_memory(dataset, tmp_path):
    from pipeline.hpo.trial import evaluate_on_test
    from pipeline.nas.train import train_candidate

    small = 3 * 2 * 4 * WINDOW * PER_RECORD  # two records a group: every split is read in groups
    # A NAS candidate trains and is scored on validation the same from memory and from the file
    arch = {"stem": 4, "layers": [["conv3", 8]]}
    memory = train_candidate(arch, FAST, load_training_data(dataset))
    assert train_candidate(arch, FAST, _stored(dataset, 1 << 30)).history == memory.history
    assert len(train_candidate(arch, FAST, _stored(dataset, small)).history) == FAST["epochs"]
    # A campaign's test scoring of a saved model reads the test split a group at a time
    trained = train_deep("cnn1d", ARGS, FAST, load_training_data(dataset), tmp_path / "scored")
    in_memory = evaluate_on_test(trained.model_path, load_training_data(dataset))
    grouped = evaluate_on_test(trained.model_path, _stored(dataset, small))
    assert grouped["n_windows"] == in_memory["n_windows"] == 9 * PER_RECORD
    assert grouped["window_accuracy"] == in_memory["window_accuracy"]
    assert grouped["loss"] == pytest.approx(in_memory["loss"], rel=1e-6)
