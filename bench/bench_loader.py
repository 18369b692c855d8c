"""Benchmark: the training data path from a dataset larger than the memory budget.

``python -m bench.bench_loader [--dataset-mb 1024] [--budget-mb 256]`` writes a dataset of
generator-shaped records (5 windows of 20,480 float32 samples, quantised like the
generator's signals) twice, gzip level 4 (the generator's layout) and raw (the importer's),
then for each:

- the loader alone: one epoch of ``iterate_batches`` over a ``StoredSplit`` within the
  budget (batch 64, shuffled), every batch touched and dropped: windows/s and MB/s;
- training: one epoch of a small 1-D CNN on the stored split, with the fraction of the epoch
  the loop spent waiting for data (``TrainingResult.data_wait_fraction``);

each with the page cache warm (the file read just before) and cold (dropped: the disk); the
loader's figures are medians of 3 epochs, and a cold row also gives the file's plain
sequential read from the disk, the most any reader gets there.

Goals (issue #23): the loader >= 10,000 windows/s (>= 800 MB/s) from a dataset 4x the budget;
data wait under 10 % of every epoch on this CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import page_cache, scratch_dir, write_result

__all__ = ["run"]

RECORD, WINDOW = 102_400, 20_480


def _write(path: Path, records: int, compress: bool) -> None:
    from pipeline.datasets.hdf5 import DatasetWriter, dataset_attrs
    from pipeline.signals.generator import Record

    rng = np.random.default_rng(0)
    t = np.arange(RECORD) / 20_480
    attrs = dataset_attrs(source="generator", split_ratios=(0.8, 0.1, 0.1), seed=0, generator_config={},
                          generator_config_hash="bench", generator_version="bench")
    sizes = {"train": records - 2 * (records // 10), "val": records // 10, "test": records // 10}
    with DatasetWriter(path, attrs, sizes, compress=compress) as writer:
        for split, n in sizes.items():
            for k in range(n):
                label = k * 11 // n
                x = np.sin(2 * np.pi * (30 + 10 * label) * t) + 0.2 * rng.standard_normal(RECORD)
                x = np.round(x * 2**11) / 2**11  # 12-bit converter steps, as the generator quantises
                writer.write(split, k, Record(x.astype(np.float32), label, "sain", 0.0, {}))


def _loader(path: Path, budget: int) -> dict[str, float]:
    from pipeline.datasets.hdf5 import read_geometry
    from pipeline.training.data import StoredSplit, iterate_batches

    split = StoredSplit(path, "train", read_geometry(path), budget)
    started, windows = time.perf_counter(), 0
    for x, _ in iterate_batches(split, 64, shuffle=True, seed=1):
        windows += len(x)
    seconds = time.perf_counter() - started
    return {"windows": windows, "windows_per_s": round(windows / seconds, 1),
            "mb_per_s": round(windows * WINDOW * 4 / seconds / 1e6, 1),
            "records_per_group": split.records_per_group}


def _disk_read(path: Path) -> float:
    """MB/s of reading the file start to end with the page cache dropped."""
    page_cache([path], cold=True)
    started = time.perf_counter()
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass
    return round(path.stat().st_size / 1e6 / (time.perf_counter() - started), 1)


def _training(path: Path, budget: int, out: Path) -> dict[str, float]:
    import torch

    from pipeline.training import load_training_data
    from pipeline.training.loop import train_deep

    torch.set_num_threads(2)
    data = load_training_data(path, memory_budget_bytes=budget)
    result = train_deep("cnn1d", {"width": 16, "depth": 3}, {"epochs": 1, "batch_size": 64, "scheduler": "none"},
                        data, out)
    return {"stored": data.stored, "train_windows_per_s": round(result.train_windows_per_s, 1),
            "data_wait_fraction": round(result.data_wait_fraction, 4)}


def run(dataset_mb: float = 1024, budget_mb: float = 256) -> dict[str, Any]:
    """Measure the loader and a training epoch on gzip and raw layouts; write ``bench/results/loader.json``."""
    records = int(dataset_mb * 1e6 // (RECORD * 4))
    budget = int(budget_mb * 2**20)
    rows = []
    for layout, compress in (("gzip4", True), ("raw", False)):
        folder = scratch_dir("pfd-bench-loader-")
        path = folder / "ds.h5"
        _write(path, records, compress)
        for cache in ("warm", "cold"):
            row = {"layout": layout, "page_cache": cache, "file_mb": round(path.stat().st_size / 1e6, 1),
                   "dataset_mb": round(records * RECORD * 4 / 1e6, 1), "budget_mb": budget_mb}
            if cache == "cold":
                row["disk_read_mb_per_s"] = _disk_read(path)
            epochs = []
            for _ in range(3):
                page_cache([path], cold=cache == "cold")
                epochs.append(_loader(path, budget))
            row.update(min(epochs, key=lambda e: abs(e["windows_per_s"] - statistics.median(
                x["windows_per_s"] for x in epochs))))
            row["loader_windows_per_s_runs"] = [e["windows_per_s"] for e in epochs]
            page_cache([path], cold=cache == "cold")
            row.update(_training(path, budget, folder / f"run-{cache}"))
            rows.append(row)
            print(row, flush=True)
        path.unlink()
    figures = {"goal": "loader >= 10,000 windows/s (>= 800 MB/s) from a dataset 4x the budget; data wait < 10 %",
               "rows": rows}
    write_result("loader", figures)
    return figures


def main() -> None:
    """Parse the sizes and run."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_loader")
    parser.add_argument("--dataset-mb", type=float, default=1024)
    parser.add_argument("--budget-mb", type=float, default=256)
    args = parser.parse_args()
    run(args.dataset_mb, args.budget_mb)


if __name__ == "__main__":
    main()
