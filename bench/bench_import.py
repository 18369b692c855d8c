"""Benchmark: importing recordings (MAT files) against reading the same files with ``scipy.io.loadmat``.

``python -m bench.bench_import [--sizes-mb 256,512,1024]`` writes rig-format MAT files
(12 kHz, drive and fan end channels, 10 s each, as ``tests/recordings/rig.py`` builds them)
adding up to each size, then times, each in a fresh child process:

- the floor: ``scipy.io.loadmat`` of every file, nothing else;
- the import: ``import_recordings`` with a label map, both channels, native rate, into a
  finished dataset file (every file planned from its headers, split by recording, then each
  read once and its records written to their split). Its output is deleted before each run,
  outside the clock: a new import writes a new file, it does not replace one.

MB/s are file megabytes over wall seconds; the ratio import/floor is the goal's figure (>= 0.7),
taken within one run. Peak RSS of each child shows whether memory grows with the data (it
should stay near one file's worth). Each size is measured twice: warm (the files sit in the
page cache, just written: the floor is then a memory copy, the fastest a reader could go) and
cold (the page cache dropped before each child, as root: files come from the disk, as a new
batch of recordings does).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import scipy.io

from bench.common import page_cache, scratch_dir, write_result

__all__ = ["run"]

FS, SECONDS = 12_000, 10.0


def _write_files(root: Path, total_mb: float) -> tuple[list[Path], int]:
    """Rig files adding up to ``total_mb``: a few distinct recordings per class, written under many names."""
    from tests.recordings.rig import FOLDERS, KINDS, RPMS, rig_signal

    rng = np.random.default_rng(0)
    distinct = {kind: [rig_signal(kind, RPMS[k], FS, SECONDS, rng) for k in range(2)] for kind in KINDS}
    paths: list[Path] = []
    written = 0
    while written < total_mb * 1e6:
        kind = KINDS[len(paths) % len(KINDS)]
        samples = distinct[kind][(len(paths) // len(KINDS)) % 2]
        folder = root / FOLDERS[kind]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{FOLDERS[kind]}_{len(paths)}.mat"
        number = f"X{len(paths):04d}"
        scipy.io.savemat(path, {f"{number}_DE_time": samples[:, :1], f"{number}_FE_time": samples[:, 1:],
                                f"{number}RPM": np.array([[1797.0]])})
        paths.append(path)
        written += path.stat().st_size
    return paths, written


def _floor(paths: list[Path]) -> tuple[float, int]:
    started = time.perf_counter()
    for path in paths:
        scipy.io.loadmat(path)
    return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _import(root: Path, out: Path) -> tuple[float, int]:
    # Modules load before the clock starts, as scipy.io does for the floor.
    from pipeline.datasets.importer import RecordingLayout, import_recordings
    from pipeline.datasets.labels import LabelRule
    from tests.recordings.rig import FOLDERS

    started = time.perf_counter()
    import_recordings([root], root, out, "bench-import", overwrite=True, suffixes=(".mat",),
                      labels=LabelRule(patterns={f"{folder}/*": kind for kind, folder in FOLDERS.items()}),
                      layout=RecordingLayout(channels=("*_DE_time", "*_FE_time"), sampling_rate=None,
                                             source_fs=FS, record_seconds=2.0))
    return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _in_child(fn: Any, *args: Any, paths: list[Path], cold: bool) -> tuple[float, int]:
    """Run ``fn(*args)`` in a fresh spawned process: its seconds and its own peak RSS (KiB).

    Dirty pages (the files just written, the previous output) are written back first, so that
    neither side pays for the benchmark's own writes; ``page_cache`` says what cold and warm mean."""
    page_cache(paths, cold=cold)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def run(sizes_mb: tuple[float, ...] = (256, 512, 1024), cold: bool = True, repeats: int = 3) -> dict[str, Any]:
    """Measure the floor and the import at each size, ``repeats`` times each (this machine's
    speed moves from run to run: the summary takes the median ratio); write
    ``bench/results/import.json``."""
    rows = []
    for size in sizes_mb:
        folder = scratch_dir("pfd-bench-import-")
        paths, total = _write_files(folder / "root", size)
        megabytes = total / 1e6
        for cache in [c for c in ("warm", "cold") if cold or c == "warm"] * repeats:
            floor_s, floor_rss = _in_child(_floor, paths, paths=paths, cold=cache == "cold")
            (folder / "out" / "bench-import.h5").unlink(missing_ok=True)
            import_s, import_rss = _in_child(_import, folder / "root", folder / "out", paths=paths,
                                             cold=cache == "cold")
            rows.append({"size_mb": round(megabytes, 1), "cache": cache, "files": len(paths),
                         "largest_file_mb": round(max(p.stat().st_size for p in paths) / 1e6, 2),
                         "loadmat_mb_s": round(megabytes / floor_s, 1), "import_mb_s": round(megabytes / import_s, 1),
                         "ratio": round(floor_s / import_s, 3),
                         "loadmat_peak_rss_mb": round(floor_rss / 1024, 1),
                         "import_peak_rss_mb": round(import_rss / 1024, 1)})
            print(rows[-1], flush=True)
        for path in (folder / "root").rglob("*.mat"):
            path.unlink()  # keep the disk free for the next size
    summary = [{"size_mb": size, "cache": cache,
                "median_ratio": float(np.median([r["ratio"] for r in rows
                                                 if (r["size_mb"], r["cache"]) == (size, cache)])),
                "median_import_mb_s": float(np.median([r["import_mb_s"] for r in rows
                                                       if (r["size_mb"], r["cache"]) == (size, cache)]))}
               for size, cache in dict.fromkeys((r["size_mb"], r["cache"]) for r in rows)]
    figures = {"goal": "import >= 0.7 x the loadmat floor, linear in size, memory bounded by one file",
               "summary": summary, "rows": rows}
    write_result("import", figures)
    return figures


def main() -> None:
    """Parse ``--sizes-mb`` and run."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_import")
    parser.add_argument("--sizes-mb", default="256,512,1024")
    parser.add_argument("--warm-only", action="store_true", help="skip the cold-cache runs (they need root)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run(tuple(float(s) for s in args.sizes_mb.split(",")), cold=not args.warm_only, repeats=args.repeats)


if __name__ == "__main__":
    main()
