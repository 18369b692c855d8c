"""Windows, labels and record ids per split, and the batch iterator used by training.

Splits are by record and come from the dataset file; windows are never re-split here, so a
record's five windows always stay in one split.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.datasets.geometry import GENERATOR_GEOMETRY, MIN_WINDOW, DatasetGeometry
from pipeline.errors import InvalidInput

if TYPE_CHECKING:
    import torch

__all__ = ["BatchTimer", "SplitData", "TrainingData", "iterate_batches", "load_training_data"]



@dataclass(frozen=True)
class SplitData:
    """One split: ``windows`` float32 [n, L] or [n, C, L], ``labels`` and ``record_ids`` int64 [n].

    Record ids group a record's windows for the soft vote; they only need to be unique
    within the split (the dataset file numbers records by position in their split).
    """

    windows: np.ndarray
    labels: np.ndarray
    record_ids: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", np.ascontiguousarray(self.windows, dtype=np.float32))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        object.__setattr__(self, "record_ids", np.asarray(self.record_ids, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class TrainingData:
    """The three record-level splits of one dataset, plus its geometry (classes, rate, channels)."""

    train: SplitData
    val: SplitData
    test: SplitData
    geometry: DatasetGeometry = field(default=GENERATOR_GEOMETRY)

    @property
    def class_keys(self) -> tuple[str, ...]:
        """The dataset's class keys, in label order."""
        return self.geometry.class_keys

    @property
    def in_channels(self) -> int:
        """Channels per window."""
        return 1 if self.train.windows.ndim == 2 else int(self.train.windows.shape[1])

    def describe(self) -> dict[str, Any]:
        """What a model needs to know of its data to be applied again: the dataset's geometry
        (classes, rate, channels, normalisation) and the shape ``[C, L]`` of one window."""
        return {**self.geometry.describe(),
                "input_shape": [self.in_channels, int(self.train.windows.shape[-1])]}

    def validate(self, num_classes: int | None = None) -> None:
        """Raise InvalidInput unless every split is non-empty, consistent and in label range."""
        classes = num_classes or len(self.class_keys)
        lengths, channels = set(), set()
        for name in ("train", "val", "test"):
            split: SplitData = getattr(self, name)
            if split.windows.ndim not in (2, 3) or len(split) == 0:
                raise InvalidInput(
                    f"{name} split must hold windows [n > 0, L] or [n > 0, C, L], got shape "
                    f"{split.windows.shape}"
                )
            channels.add(1 if split.windows.ndim == 2 else split.windows.shape[1])
            if split.windows.shape[0] != len(split) or split.record_ids.shape != split.labels.shape:
                raise InvalidInput(f"{name} split: windows, labels and record_ids differ in length")
            if split.labels.min() < 0 or split.labels.max() >= classes:
                raise InvalidInput(f"{name} split has labels outside [0, {classes})")
            if not np.isfinite(split.windows).all():
                raise InvalidInput(f"{name} split holds NaN or infinite samples")
            lengths.add(split.windows.shape[-1])
        if len(channels) != 1:
            raise InvalidInput(f"the splits disagree on the number of channels: {sorted(channels)}")
        if len(lengths) != 1 or min(lengths) < MIN_WINDOW:
            raise InvalidInput(
                f"all windows must share one length >= {MIN_WINDOW}, got {sorted(lengths)}"
            )


def load_training_data(path: str | os.PathLike[str]) -> TrainingData:
    """Read the train/val/test windows of a dataset file (raises DatasetFileError)."""
    from pipeline.datasets.hdf5 import read_geometry, read_windows

    splits = {name: SplitData(*read_windows(path, name)) for name in ("train", "val", "test")}
    return TrainingData(geometry=read_geometry(path), **splits)


class BatchTimer:
    """Accumulates the seconds a training loop spends waiting for its batches."""

    def __init__(self) -> None:
        self.wait_s = 0.0

    def reset(self) -> None:
        """Start a new epoch's count."""
        self.wait_s = 0.0


def iterate_batches(
    split: SplitData,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    timer: BatchTimer | None = None,
    device: str = "cpu",
    num_workers: int = 0,
    drop_single: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x [B, C, L], y [B])`` tensors on ``device``; time spent fetching goes to ``timer``.

    The order depends only on ``seed`` (a fresh generator per call), so a resumed epoch sees
    the same order as an uninterrupted one. ``drop_single`` skips a last batch of one window
    (batch norm cannot train on it).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    windows = torch.from_numpy(split.windows)
    labels = torch.from_numpy(split.labels)
    chunks = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if drop_single and len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks.pop()
    if num_workers > 0:
        yield from _worker_batches(windows, labels, chunks, timer, device, num_workers)
        return
    for idx in chunks:
        start = time.perf_counter()
        x = _with_channels(windows[idx]).to(device, non_blocking=True)
        y = labels[idx].to(device, non_blocking=True)
        if timer is not None:
            timer.wait_s += time.perf_counter() - start
        yield x, y


def _worker_batches(
    windows: torch.Tensor,
    labels: torch.Tensor,
    chunks: list[torch.Tensor],
    timer: BatchTimer | None,
    device: str,
    num_workers: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    from torch.utils.data import DataLoader, TensorDataset

    # "spawn": forking a process that runs broker threads can deadlock on inherited locks.
    loader = DataLoader(
        TensorDataset(windows, labels),
        batch_sampler=[chunk.tolist() for chunk in chunks],
        num_workers=num_workers,
        multiprocessing_context="spawn",
        pin_memory=device.startswith("cuda"),
    )
    iterator = iter(loader)
    while True:
        start = time.perf_counter()
        try:
            x, y = next(iterator)
        except StopIteration:
            return
        x, y = _with_channels(x).to(device, non_blocking=True), y.to(device, non_blocking=True)
        if timer is not None:
            timer.wait_s += time.perf_counter() - start
        yield x, y


def _with_channels(x: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` windows gain their one channel axis; ``[B, C, L]`` pass as they are."""
    return x.unsqueeze(1) if x.ndim == 2 else x
