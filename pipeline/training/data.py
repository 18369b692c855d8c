"""Windows, labels and record ids per split, and the batch iterator used by training.

Splits are by record and come from the dataset file; windows are never re-split here, so a
record's windows always stay in one split. A dataset that fits the memory budget is read
into memory (``SplitData``); a larger one is read a group of records at a time
(``pipeline.training.stored.StoredSplit``), with the same batches when it does fit.
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
from pipeline.training.stored import StoredSplit

if TYPE_CHECKING:
    import torch

__all__ = ["BatchTimer", "Split", "SplitData", "StoredSplit", "TrainingData", "iterate_batches",
           "load_training_data"]



@dataclass(frozen=True)
class SplitData:
    """One split: ``windows`` float32 [n, L] or [n, C, L], ``labels`` and ``record_ids`` int64 [n].

    Record ids group a record's windows for the soft vote; they only need to be unique
    within the split (the dataset file numbers records by position in their split).
    ``shaft_hz`` float64 [n] is each window's recorded shaft speed (NaN where none; all NaN
    when not given), which classical features take their 1X line from.
    """

    windows: np.ndarray
    labels: np.ndarray
    record_ids: np.ndarray
    shaft_hz: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", np.ascontiguousarray(self.windows, dtype=np.float32))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        object.__setattr__(self, "record_ids", np.asarray(self.record_ids, dtype=np.int64))
        speeds = np.full(len(self.labels), np.nan) if self.shaft_hz is None else self.shaft_hz
        object.__setattr__(self, "shaft_hz", np.asarray(speeds, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def window_shape(self) -> tuple[int, ...]:
        """One window's shape: ``(L,)`` or ``(C, L)``."""
        return tuple(self.windows.shape[1:])

    def groups(self, order_seed: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The whole split as one group (``StoredSplit.groups``' in-memory counterpart)."""
        yield self.windows, np.arange(len(self), dtype=np.int64)


Split = SplitData | StoredSplit


@dataclass(frozen=True)
class TrainingData:
    """The three record-level splits of one dataset, plus its geometry (classes, rate, channels)."""

    train: Split
    val: Split
    test: Split
    geometry: DatasetGeometry = field(default=GENERATOR_GEOMETRY)

    @property
    def class_keys(self) -> tuple[str, ...]:
        """The dataset's class keys, in label order."""
        return self.geometry.class_keys

    @property
    def in_channels(self) -> int:
        """Channels per window."""
        shape = self.train.window_shape
        return 1 if len(shape) == 1 else int(shape[0])

    @property
    def stored(self) -> bool:
        """True when the splits are read from the file in groups (larger than the memory budget)."""
        return isinstance(self.train, StoredSplit)

    def describe(self) -> dict[str, Any]:
        """What a model needs to know of its data to be applied again: the dataset's geometry
        (classes, rate, channels, normalisation) and the shape ``[C, L]`` of one window."""
        return {**self.geometry.describe(),
                "input_shape": [self.in_channels, int(self.train.window_shape[-1])]}

    def validate(self, num_classes: int | None = None) -> None:
        """Raise InvalidInput unless every split is non-empty, consistent and in label range."""
        classes = num_classes or len(self.class_keys)
        lengths, channels = set(), set()
        for name in ("train", "val", "test"):
            split: Split = getattr(self, name)
            shape = split.window_shape
            if len(shape) not in (1, 2) or len(split) == 0:
                raise InvalidInput(
                    f"{name} split must hold windows [n > 0, L] or [n > 0, C, L], got {len(split)} "
                    f"of shape {shape}"
                )
            channels.add(1 if len(shape) == 1 else shape[0])
            if isinstance(split, SplitData) and split.windows.shape[0] != len(split) \
                    or split.record_ids.shape != split.labels.shape or split.shaft_hz.shape != split.labels.shape:
                raise InvalidInput(f"{name} split: windows, labels, record_ids and shaft speeds differ in length")
            if split.labels.min() < 0 or split.labels.max() >= classes:
                raise InvalidInput(f"{name} split has labels outside [0, {classes})")
            # A stored split's samples are checked as each group is read.
            if isinstance(split, SplitData) and not np.isfinite(split.windows).all():
                raise InvalidInput(f"{name} split holds NaN or infinite samples")
            lengths.add(shape[-1])
        if len(channels) != 1:
            raise InvalidInput(f"the splits disagree on the number of channels: {sorted(channels)}")
        if len(lengths) != 1 or min(lengths) < MIN_WINDOW:
            raise InvalidInput(
                f"all windows must share one length >= {MIN_WINDOW}, got {sorted(lengths)}"
            )


def load_training_data(path: str | os.PathLike[str], memory_budget_bytes: int | None = None) -> TrainingData:
    """The train/val/test splits of a dataset file (raises DatasetFileError).

    Windows are read into memory when they fit ``memory_budget_bytes`` (None: no budget);
    otherwise each split is a ``StoredSplit`` read a group of records at a time within it.
    """
    from pipeline.datasets.hdf5 import cut_windows, read_geometry, read_labels, read_split

    geometry = read_geometry(path)
    names = ("train", "val", "test")
    if memory_budget_bytes is not None:
        window_bytes = 4 * geometry.in_channels * geometry.window_length * geometry.windows_per_record
        total = sum(read_labels(path, name).size for name in names) * window_bytes
        if total > memory_budget_bytes:
            return TrainingData(geometry=geometry, **{
                name: StoredSplit(path, name, geometry, memory_budget_bytes) for name in names})
    splits = {}
    for name in names:
        arrays = read_split(path, name)
        windows, labels, record_ids = cut_windows(arrays.signals, arrays.labels, geometry)
        splits[name] = SplitData(windows, labels, record_ids, arrays.shaft_hz[record_ids])
    return TrainingData(geometry=geometry, **splits)


class BatchTimer:
    """Accumulates the seconds a training loop spends waiting for its batches."""

    def __init__(self) -> None:
        self.wait_s = 0.0

    def reset(self) -> None:
        """Start a new epoch's count."""
        self.wait_s = 0.0


def iterate_batches(
    split: Split,
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
    (batch norm cannot train on it). A ``StoredSplit`` is read a group at a time by its own
    thread (``num_workers`` does not apply to it).
    """
    import torch

    if isinstance(split, StoredSplit):
        yield from _stored_batches(split, batch_size, shuffle, seed, timer, device, drop_single)
        return
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


def _stored_batches(
    split: StoredSplit, batch_size: int, shuffle: bool, seed: int, timer: BatchTimer | None,
    device: str, drop_single: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of a stored split, group after group; a group's last partial batch is carried
    into the next, so only the epoch's last batch is short (as in memory)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    groups = split.groups(seed if shuffle else None)
    carry_x = carry_y = None
    yielded = 0
    while True:
        start = time.perf_counter()
        item = next(groups, None)
        if timer is not None:
            timer.wait_s += time.perf_counter() - start
        if item is None:
            break
        windows, positions = item
        x, y = torch.from_numpy(windows), torch.from_numpy(split.labels[positions])
        if carry_x is not None:
            x, y = torch.cat([carry_x, x]), torch.cat([carry_y, y])
        order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
        full = len(x) - len(x) % batch_size
        for i in range(0, full, batch_size):
            start = time.perf_counter()
            idx = order[i:i + batch_size]
            bx, by = _with_channels(x[idx]).to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
            if timer is not None:
                timer.wait_s += time.perf_counter() - start
            yield bx, by
            yielded += 1
        carry_x, carry_y = x[order[full:]], y[order[full:]]
    if carry_x is not None and len(carry_x) and not (drop_single and yielded and len(carry_x) == 1):
        yield _with_channels(carry_x).to(device, non_blocking=True), carry_y.to(device, non_blocking=True)
