"""Dataset generation in records per second, against the I/O floor.

The floor writes the very same arrays to HDF5 with the same chunking and compression, and
no generation: the fastest a generator feeding that file could possibly go.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import h5py

from bench.common import write_result
from pipeline.datasets.generate import generate_dataset
from pipeline.datasets.hdf5 import read_split
from pipeline.datasets.layout import COMPRESSION_LEVEL
from pipeline.domain import RECORD_LENGTH
from pipeline.signals import GeneratorConfig

__all__ = ["run"]


def _io_floor(source: Path, target: Path) -> float:
    """Seconds to write the source file's signals again, record by record, gzip as the writer."""
    splits = {split: read_split(source, split) for split in ("train", "val", "test")}
    started = time.perf_counter()
    with h5py.File(target, "w") as handle:
        for split, arrays in splits.items():
            group = handle.create_group(split)
            signals = group.create_dataset(
                "signals", shape=arrays.signals.shape, dtype="float32",
                chunks=(1, RECORD_LENGTH), compression="gzip", compression_opts=COMPRESSION_LEVEL,
            )
            for i, signal in enumerate(arrays.signals):
                signals[i] = signal
            group.create_dataset("labels", data=arrays.labels)
            group.create_dataset("severities", data=arrays.severities)
    return time.perf_counter() - started


def run(records_per_class: int = 320, workers: int | None = None) -> dict[str, Any]:
    """Generate ``11 * records_per_class`` records and compare with the I/O floor."""
    config = GeneratorConfig(records_per_class=records_per_class, seed=2024)
    with tempfile.TemporaryDirectory(prefix="pfd-bench-gen-") as tmp:
        started = time.perf_counter()
        produced = generate_dataset(config, tmp, "bench", workers=workers)
        generation_s = time.perf_counter() - started
        floor_s = _io_floor(Path(produced.hdf5_path), Path(tmp) / "floor.h5")
        size_mb = Path(produced.hdf5_path).stat().st_size / 1e6
    n = config.n_records
    figures = {
        "records": n, "records_per_class": records_per_class, "workers": workers or "all cores",
        "generation_s": round(generation_s, 2), "generation_records_per_s": round(n / generation_s, 1),
        "io_floor_s": round(floor_s, 2), "io_floor_records_per_s": round(n / floor_s, 1),
        "ratio_to_floor": round(floor_s / generation_s, 3), "goal_ratio": 0.5, "file_mb": round(size_mb, 1),
    }
    figures["meets_goal"] = figures["ratio_to_floor"] >= 0.5
    write_result("generation", figures)
    return figures
