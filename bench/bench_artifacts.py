"""Artifact round trips through the store, beside a plain local copy, and training from a
dataset held in the object store.

For a checkpoint (48 MB), an ONNX model (16 MB) and a dataset (256 MB) of random bytes,
medians of 3 runs in MB/s: a plain local copy (``shutil.copyfile`` and ``fsync``, what the
local store's ``put`` adds a checksum and a rename to), the local store's ``put`` and checked
``fetch``, and the object store's (a SeaweedFS of the benchmark's own on this machine) ``put``,
cold ``fetch`` (download, checksum, into the cache) and warm ``fetch`` (the cache already
holds it: milliseconds, as no bytes move). Then how long a training thread waits per epoch
to publish a ResNet18-1D epoch's checkpoints (``last.pt`` 46 MB, ``best.pt`` 16 MB) to the
object store: uploading them itself, or handing them to the background publisher. Then a
generated dataset is put into the object store, fetched cold, and a model
trains one epoch on it under a memory budget smaller than the dataset (the stored,
chunked read path): its data-wait fraction. Writes ``bench/results/artifacts.json``.

    python -m bench.bench_artifacts      (or ``python -m bench --only artifacts``; ``--quick``
                                          runs 1/16 of the sizes once, to check the benchmark)
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.platform.artifacts import ArtifactCache, ArtifactStore, LocalStore, S3Store, open_store
from actors.platform.background_publish import BackgroundPublisher
from bench.common import scratch_dir, write_result
from tests.servers import SeaweedServer

__all__ = ["run"]

MB = 1024 * 1024
SIZES = {"onnx": 16 * MB, "checkpoint": 48 * MB, "dataset": 256 * MB}
REPEATS = 3


def _median_mb_s(size: int, runs: list[float]) -> float:
    return round(size / MB / statistics.median(runs), 1)


def _timed(action: Callable[[], Any], before: Callable[[], Any] = lambda: None) -> float:
    before()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _plain_copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    with open(target, "rb+") as written:
        os.fsync(written.fileno())


def _round_trips(name: str, source: Path, local: LocalStore, s3: S3Store, scratch: Path,
                 repeats: int) -> dict[str, float]:
    size, key = source.stat().st_size, f"bench/{name}/{source.name}"
    runs: dict[str, list[float]] = {k: [] for k in ("plain_copy", "local_put", "local_fetch", "s3_put",
                                                    "s3_fetch_cold", "s3_fetch_warm")}
    for _ in range(repeats):
        runs["plain_copy"].append(_timed(lambda: _plain_copy(source, scratch / "copy")))
        runs["local_put"].append(_timed(lambda: local.put(key, source), lambda: local.delete(key)))
        sha256 = local.stat(key).sha256
        runs["local_fetch"].append(_timed(lambda: local.fetch(key, sha256)))
        runs["s3_put"].append(_timed(lambda: s3.put(key, source)))
        runs["s3_fetch_cold"].append(_timed(lambda: s3.fetch(key, sha256), lambda: shutil.rmtree(s3.cache.root, True)))
        runs["s3_fetch_warm"].append(_timed(lambda: s3.fetch(key, sha256)))
    (scratch / "copy").unlink()
    warm = runs.pop("s3_fetch_warm")  # a cache hit moves no bytes: its time, not a rate
    return {**{name: _median_mb_s(size, times) for name, times in runs.items()},
            "s3_fetch_warm_ms": round(statistics.median(warm) * 1000, 3)}


def _epoch_publishing(store: ArtifactStore, scratch: Path, scale: int, epochs: int = 5) -> dict[str, Any]:
    """Seconds the training thread waits per epoch to publish its checkpoints: uploading them
    inline, or submitting them to a ``BackgroundPublisher`` (and, once, draining it at the end)."""
    run = scratch / "epochs"
    run.mkdir()
    sizes = {"best.pt": 16 * MB // scale, "last.pt": 46 * MB // scale}
    files = [(run / name, f"bench/epochs/{name}") for name in sizes]

    def write_epoch() -> None:  # as the training loop does: whole files renamed over the names
        for name, size in sizes.items():
            (run / "next").write_bytes(os.urandom(size))
            os.replace(run / "next", run / name)

    inline = [_timed(lambda: [store.put(key, path) for path, key in files], write_epoch) for _ in range(epochs)]
    with BackgroundPublisher(store, files) as publisher:
        background = [_timed(publisher.submit, write_epoch) for _ in range(epochs)]
        drain = _timed(publisher.drain)
    shutil.rmtree(run)
    return {"epochs": epochs, "mb_per_epoch": sum(sizes.values()) // MB,
            "inline_wait_s_per_epoch": round(statistics.median(inline), 4),
            "background_wait_s_per_epoch": round(statistics.median(background), 5),
            "background_final_drain_s": round(drain, 4)}


def _training_from_store(store: ArtifactStore, scratch: Path, records_per_class: int) -> dict[str, Any]:
    """Put a generated dataset into the store, fetch it cold, train one epoch from it on a budget."""
    from pipeline.datasets.generate import generate_dataset
    from pipeline.signals import GeneratorConfig
    from pipeline.training import TrainingConfig, load_training_data
    from pipeline.training.loop import train_deep

    config = GeneratorConfig(records_per_class=records_per_class, seed=7)
    made = generate_dataset(config, scratch / "made", "bench-store")
    stored = store.put("datasets/bench-store/data.h5", Path(made.hdf5_path))
    fetched = store.fetch(stored.key, stored.sha256)
    budget = stored.size // 4  # the dataset is 4x the memory budget: the stored, chunked path
    data = load_training_data(fetched, memory_budget_bytes=budget)
    training = TrainingConfig.from_dict({"epochs": 1, "seed": 0, "scheduler": "none", "batch_size": 64})
    result = train_deep("cnn1d", None, training, data, scratch / "train")
    return {"dataset_mb": round(stored.size / MB, 1), "memory_budget_mb": round(budget / MB, 1), "model": "cnn1d",
            "train_windows_per_s": round(result.train_windows_per_s or 0, 1),
            "data_wait_fraction": round(result.data_wait_fraction, 4)}


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every round trip and the training from the store; write ``artifacts.json``."""
    repeats, scale = (1, 16) if quick else (REPEATS, 1)
    scratch = scratch_dir("pfd-bench-artifacts-")
    server = SeaweedServer(scratch / "seaweed").start()
    try:
        local = LocalStore(scratch / "local-store")
        s3 = open_store(f"s3://{server.bucket}/bench", cache=ArtifactCache(scratch / "cache", 4096 * MB),
                        endpoint_url=server.endpoint, access_key_id=server.access_key,
                        secret_access_key=server.secret_key)
        assert isinstance(s3, S3Store)
        figures: dict[str, Any] = {"repeats": repeats, "unit": "MB/s, median", "object_store": "SeaweedFS (weed mini) "
                                   "on this machine, over loopback", "round_trips": {}}
        for name, size in SIZES.items():
            source = scratch / f"{name}.bin"
            with open(source, "wb") as handle:
                for _ in range(size // MB // scale):
                    handle.write(os.urandom(MB))
            figures["round_trips"][name] = {"size_mb": size // MB // scale,
                                            **_round_trips(name, source, local, s3, scratch, repeats)}
            source.unlink()
            print(name, figures["round_trips"][name], flush=True)
        figures["epoch_publishing"] = _epoch_publishing(s3, scratch, scale)
        print(figures["epoch_publishing"], flush=True)
        figures["training_from_object_store"] = _training_from_store(s3, scratch, 4 if quick else 40)
        print(figures["training_from_object_store"], flush=True)
    finally:
        server.stop()
    write_result("artifacts", figures)
    return figures


if __name__ == "__main__":
    run()
