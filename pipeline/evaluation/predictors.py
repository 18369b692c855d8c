"""A trained model (deep checkpoint or classical skops file) as one ``predict_proba`` callable."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.domain import FS
from pipeline.errors import InvalidInput

__all__ = ["Predictor", "load_predictor", "read_test_windows", "test_window_groups"]


@dataclass(frozen=True)
class Predictor:
    """``predict_proba(windows [n, L], shaft_hz=None) -> [n, num_classes]`` of one saved model.

    ``module`` is the torch module of a deep model (for FLOP counting), ``None`` for a
    classical one, whose ``predict_proba`` includes extracting the 36 features (their 1X
    line at ``shaft_hz`` [n], each window's recorded shaft speed, where known).
    """

    model_key: str
    num_classes: int
    predict_proba: Callable[..., np.ndarray]
    module: Any = None
    parameter_count: int = 0


def _deep(model_key: str, path: str | os.PathLike[str], num_classes: int, batch_size: int) -> Predictor:
    import torch

    from pipeline.models import count_parameters
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.training.inference import predict_proba

    model, meta = load_checkpoint(path)
    if meta["model_key"] != model_key:
        raise InvalidInput(f"model file {path} holds {meta['model_key']!r}, the experiment says {model_key!r}")
    if len(meta["class_keys"]) != num_classes:
        raise InvalidInput(f"model file {path} predicts {len(meta['class_keys'])} classes, expected {num_classes}")

    def predict(windows: np.ndarray, shaft_hz: np.ndarray | None = None) -> np.ndarray:
        del shaft_hz  # a deep model learns its own view of the spectrum
        # One thread: a cpu_processing worker is one process per core, and torch's default
        # (every core) in each of them would only make them fight over the cores.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return predict_proba(model, windows, batch_size)
        finally:
            torch.set_num_threads(threads)

    return Predictor(model_key, num_classes, predict, module=model, parameter_count=count_parameters(model))


def _classical(model_key: str, path: str | os.PathLike[str], num_classes: int, sha256: str | None,
               fs: float) -> Predictor:
    from pipeline.features.extract import extract_window_features
    from pipeline.models.classical import load_classical

    model = load_classical(path, sha256)
    columns = np.asarray(model.classes_, dtype=np.int64)
    if columns.size and columns.max() >= num_classes:
        raise InvalidInput(f"model file {path} knows class {int(columns.max())}, beyond {num_classes} classes")

    def predict(windows: np.ndarray, shaft_hz: np.ndarray | None = None) -> np.ndarray:
        features = extract_window_features(windows, fs, shaft_hz=shaft_hz).values
        # A class absent from training has no column: its probability is 0.
        proba = np.zeros((len(windows), num_classes))
        proba[:, columns] = model.predict_proba(features)
        return proba

    return Predictor(model_key, num_classes, predict)


def load_predictor(
    model_key: str,
    model_path: str | os.PathLike[str],
    num_classes: int,
    *,
    sha256: str | None = None,
    batch_size: int = 32,
    fs: float = FS,
) -> Predictor:
    """Load the model an experiment saved (deep: ``best.pt``; classical: ``model.skops``).

    ``fs`` is the sampling rate of the windows a classical model's features are taken from.

    Raises:
        CheckpointError: the file is missing, corrupt or does not match ``sha256``.
        InvalidInput: unknown model key, or a model for another number of classes.
    """
    from pipeline.models import CLASSICAL_KEYS, DEEP_KEYS, SEARCHED_KEYS

    if model_key in DEEP_KEYS + SEARCHED_KEYS:
        return _deep(model_key, model_path, num_classes, batch_size)
    if model_key in CLASSICAL_KEYS:
        return _classical(model_key, model_path, num_classes, sha256, fs)
    raise InvalidInput(f"unknown model key {model_key!r}")


def read_test_windows(
    path: str | os.PathLike[str], max_windows: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test split's windows, labels and shaft speeds in Hz (NaN where not recorded), the
    first ``max_windows`` (whole records).

    Only the records needed are read, so a latency sample of a large dataset stays cheap.

    Raises:
        DatasetFileError: the file is missing or not in the dataset layout.
    """
    from pipeline.datasets.hdf5 import cut_windows, read_geometry, read_split

    geometry = read_geometry(path)
    per_record = geometry.windows_per_record
    records = None if max_windows is None else slice(0, -(-max_windows // per_record))
    arrays = read_split(path, "test", records)
    windows, labels, record_ids = cut_windows(arrays.signals, arrays.labels, geometry)
    return windows[:max_windows], labels[:max_windows], arrays.shaft_hz[record_ids][:max_windows]


def test_window_groups(
    path: str | os.PathLike[str], max_windows: int | None, budget_bytes: int,
) -> tuple[int, Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """The test split's windows, labels and shaft speeds a group of records at a time within
    ``budget_bytes`` (the first ``max_windows`` in one group when given): the number of
    windows, and the groups in file order.

    Raises:
        DatasetFileError: the file is missing or not in the dataset layout.
    """
    from pipeline.datasets.hdf5 import read_geometry
    from pipeline.training.stored import StoredSplit

    if max_windows is not None:
        windows, labels, shaft_hz = read_test_windows(path, max_windows)
        return len(labels), iter([(windows, labels, shaft_hz)])
    split = StoredSplit(path, "test", read_geometry(path), budget_bytes)
    return len(split), ((windows, split.labels[positions], split.shaft_hz[positions])
                        for windows, positions in split.groups(None))
