"""A split read from its dataset file in groups of records, within a memory budget.

Training a dataset larger than memory: a ``StoredSplit`` holds only labels, record ids and
shaft speeds (a few bytes a window); its windows are read a group of records at a time. An epoch's
records are permuted from the seed, cut into groups that fit a third of the budget (one
group in use, one read ahead by a background thread, one being read), each group's records
are read in file order into one of three buffers reused from group to group (fresh memory
costs a page fault per 4 KiB: measured here, faulting in a new group's pages took longer than
reading it), and its windows are shuffled before they are batched. A record is one HDF5
chunk; where the layout allows (one chunk per record, deflate or nothing, no other filter)
chunks are read straight from the file and inflated on a thread per CPU (zlib lets go of
the GIL), else through h5py. Every window is seen once an epoch, in an
order that depends only on the seed, so a resumed epoch sees the batches an uninterrupted
one would. When the whole split fits in one group the records are read in file order and
shuffled exactly as ``iterate_batches`` shuffles an in-memory split: the same batches.
"""

from __future__ import annotations

import os
import queue
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np

from pipeline.datasets.geometry import DatasetGeometry
from pipeline.errors import InvalidInput

__all__ = ["StoredSplit"]

_GROUPS_IN_MEMORY = 3  # in use, read ahead, being read


class StoredSplit:
    """One split of a dataset file, read in groups of records within ``budget_bytes``."""

    def __init__(self, path: str | os.PathLike[str], split: str, geometry: DatasetGeometry,
                 budget_bytes: int) -> None:
        from pipeline.datasets.hdf5 import read_labels, read_shaft_hz

        self.path, self.split, self.geometry = Path(path), split, geometry
        record_labels = read_labels(path, split)
        per = geometry.windows_per_record
        self.records = int(record_labels.size)
        self.labels = np.repeat(record_labels, per)
        self.record_ids = np.repeat(np.arange(self.records, dtype=np.int64), per)
        self.shaft_hz = np.repeat(read_shaft_hz(path, split), per)
        width = geometry.window_length
        self.window_shape: tuple[int, ...] = (width,) if geometry.in_channels == 1 else (geometry.in_channels, width)
        self.record_shape = geometry.signal_shape()
        record_bytes = 4 * int(np.prod(self.record_shape))
        window_bytes = 4 * per * geometry.in_channels * width  # overlapping windows take more than the record
        self.records_per_group = max(1, int(budget_bytes) // _GROUPS_IN_MEMORY // max(record_bytes, window_bytes))
        self._buffers: list[np.ndarray] = []

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def windows(self) -> np.ndarray:
        """Every window at once: only for a split that fits in memory after all."""
        # Copied group by group: a group's buffer is reused by the group read three later.
        return np.concatenate([windows.copy() for windows, _ in self.groups(None)])

    def groups(self, order_seed: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(windows, positions)`` a group of records at a time, read ahead in a thread.

        ``positions`` are the windows' indices in the split. ``order_seed`` None: records in
        file order (for evaluation); else permuted from it (a split in one group keeps file
        order, so its windows match the in-memory split's exactly).
        """
        order = np.arange(self.records)
        if order_seed is not None and self.records > self.records_per_group:
            order = np.random.default_rng(order_seed).permutation(self.records)
        chunks = [np.sort(order[k:k + self.records_per_group])
                  for k in range(0, self.records, self.records_per_group)]
        return _read_ahead(self, chunks)

    def read_records(self, records: np.ndarray, buffer: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The windows of some records (ascending) and their positions in the split, read into
        reusable buffer ``buffer`` (0-2): its windows are overwritten by the group read into it
        next, so a consumer copies what it keeps (as batching does).

        Raises:
            InvalidInput: a window holds NaN or infinite samples.
        """
        from pipeline.datasets.hdf5 import cut_windows

        while len(self._buffers) <= buffer:
            self._buffers.append(np.empty((self.records_per_group, *self.record_shape), np.float32))
        signals = self._buffers[buffer][:len(records)]
        _read_into(self.path, self.split, records, signals)
        windows, _, local = cut_windows(signals, np.zeros(len(records), np.int64), self.geometry)
        if not np.isfinite(windows).all():
            raise InvalidInput(f"{self.split} split holds NaN or infinite samples")
        per = self.geometry.windows_per_record
        positions = records[local] * per + np.tile(np.arange(per), len(records))
        return windows, positions


def _read_ahead(split: StoredSplit, chunks: list[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Read each chunk of records in a background thread, one chunk ahead of the consumer.

    HDF5 inflates chunks with the GIL released, so reading overlaps the training step.
    A reader's error is raised in the consumer; a consumer that stops early stops the reader.
    """
    ready: queue.Queue[tuple[np.ndarray, np.ndarray] | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item: tuple[np.ndarray, np.ndarray] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for k, chunk in enumerate(chunks):
                if not offer(split.read_records(chunk, k % _GROUPS_IN_MEMORY)):
                    return
            offer(None)
        except BaseException as error:  # handed to the consumer, which raises it
            offer(error)

    reader = threading.Thread(target=produce, name=f"read-{split.split}", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


@cache
def _inflaters() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="inflate")


def _read_into(path: Path, split: str, records: np.ndarray, out: np.ndarray) -> None:
    """Read records (one chunk each) into ``out``: straight from the file where the layout
    allows, else through h5py."""
    import h5py

    with h5py.File(path, "r") as handle:
        dataset = handle[split]["signals"]
        direct = (dataset.chunks == (1, *dataset.shape[1:]) and dataset.dtype == np.dtype("<f4")
                  and dataset.compression in (None, "gzip") and not dataset.shuffle
                  and not dataset.fletcher32 and dataset.scaleoffset is None)
        if not direct:
            for k, record in enumerate(records.tolist()):
                dataset.read_direct(out, np.s_[record], np.s_[k])
            return
        origin = (0,) * (dataset.ndim - 1)
        chunks = [dataset.id.get_chunk_info_by_coord((record, *origin)) for record in records.tolist()]
        inflate = dataset.compression == "gzip"
    descriptor = os.open(path, os.O_RDONLY)
    try:
        def fill(k: int) -> None:
            chunk = chunks[k]
            if inflate and not chunk.filter_mask & 1:  # mask bit 0: stored without deflate
                out[k] = np.frombuffer(zlib.decompress(os.pread(descriptor, chunk.size, chunk.byte_offset)),
                                       "<f4").reshape(out.shape[1:])
            else:
                os.preadv(descriptor, [memoryview(out[k]).cast("B")], chunk.byte_offset)

        list(_inflaters().map(fill, range(len(chunks))))
    finally:
        os.close(descriptor)
