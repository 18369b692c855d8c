"""What MLflow logging adds to an epoch of the tests' tiny training (goal: under 2 %).

A real ``mlflow server`` (SQLite, local artifacts) runs on loopback in a scratch folder. The
tests' tiny CNN trains on the tests' tiny dataset (three separable classes, four records
each), alternately without MLflow and with a ``TrackedRun`` fed by the background writer
exactly as ``train_model`` feeds it (params, tags, one metrics batch per epoch). Figures: the
median epoch time of each, the overhead, the longest time an ``on_epoch`` call held the
training loop, and the first tracked round apart (it pays mlflow's import, on the writer's
thread). ``python -m bench.bench_mlflow [--epochs N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import scratch_dir, write_result

__all__ = ["run"]

MODEL = ("cnn1d", {"width": 8, "depth": 2})
NOISE_OFF = {layer: False for layer in (  # the tests' noise-free signals
    "measurement", "emi", "pink", "drift", "quantization", "sensor_drift", "aliasing", "impulses")}
TRAINING = {"batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0, "early_stopping_patience": 1000}


def _train(data: Any, folder: Path, epochs: int, run: Any | None) -> dict[str, Any]:
    """One tiny training; with ``run``, every epoch is queued to MLflow as ``train_model`` does."""
    from pipeline.training.loop import train_deep

    held: list[float] = []

    def on_epoch(record: Any) -> None:
        if run is not None:
            started = time.perf_counter()
            values = record.to_dict()
            run.epoch(record.epoch, {k: values[k] for k in ("train_loss", "val_loss", "train_acc", "val_acc", "lr")}
                      | {"epoch_time_s": values["duration_s"]})
            held.append(time.perf_counter() - started)

    started = time.perf_counter()
    result = train_deep(MODEL[0], MODEL[1], {**TRAINING, "epochs": epochs}, data, folder, on_epoch=on_epoch)
    wall = time.perf_counter() - started
    return {"epoch_s": statistics.median(h["duration_s"] for h in result.history), "wall_s": wall,
            "on_epoch_max_ms": max(held) * 1000 if held else 0.0}


def run(epochs: int = 20, rounds: int = 5) -> dict[str, Any]:
    """Alternate untracked and tracked trainings ``rounds`` times; write and return the figures."""
    import torch

    folder = scratch_dir("pfd-bench-mlflow-")
    os.environ.update({"PFD_VAR_DIR": str(folder / "var"), "PFD_MLFLOW_FLUSH_WAIT_S": "30"})
    torch.set_num_threads(1)
    from actors.platform.mlflow_runs import TrackedRun
    from actors.platform.mlflow_writer import mlflow_writer
    from actors.store.db import get_database, migrate
    from config.settings import Settings
    from pipeline.datasets.generate import generate_dataset
    from pipeline.signals.config import GeneratorConfig
    from pipeline.training import load_training_data
    from tests.mlflow_server import MlflowServer

    server = MlflowServer(folder / "mlflow").start()
    try:
        settings = Settings(mlflow_tracking_uri=server.uri)
        migrate(settings.database_url)
        database, writer = get_database(settings.database_url), mlflow_writer(settings)
        config = GeneratorConfig.from_dict({"fault_types": ["sain", "desequilibre", "oilwhirl"], "records_per_class": 4,
                                            "noise": NOISE_OFF, "seed": 1})
        produced = generate_dataset(config, folder / "datasets", "bench-mlflow", workers=1)
        data = load_training_data(produced.hdf5_path)
        plain, tracked = [], []
        _train(data, folder / "warm-up", 2, None)  # torch's first-call costs fall on neither side
        for index in range(rounds):
            plain.append(_train(data, folder / f"plain-{index}", epochs, None))
            tracked_run = TrackedRun(writer, database, experiment="bench", kind="experiment", record_id=f"bench-{index}",
                                     name=f"bench {index}", tags={"pfd.bench": "mlflow"})
            tracked_run.params({"model_key": MODEL[0], "epochs": str(epochs)})
            tracked.append(_train(data, folder / f"tracked-{index}", epochs, tracked_run))
            tracked_run.end()
            assert writer.drain(60), "the writer did not catch up within 60 s"
    finally:
        server.stop()
    base = statistics.median(r["epoch_s"] for r in plain)
    warm = statistics.median(r["epoch_s"] for r in tracked[1:] or tracked)
    base_wall = statistics.median(r["wall_s"] for r in plain)
    warm_wall = statistics.median(r["wall_s"] for r in tracked[1:] or tracked)
    figures = {
        "what": "median epoch of the tests' tiny cnn1d training, untracked vs logged to a loopback mlflow server",
        "epochs": epochs, "rounds": rounds, "goal_overhead_pct": 2.0,
        "epoch_s_untracked": round(base, 5), "epoch_s_tracked": round(warm, 5),
        "epoch_overhead_pct": round(100 * (warm / base - 1), 2),
        "run_wall_s_untracked": round(base_wall, 3), "run_wall_s_tracked": round(warm_wall, 3),
        "run_wall_overhead_pct": round(100 * (warm_wall / base_wall - 1), 2),
        "first_tracked_epoch_s": round(tracked[0]["epoch_s"], 5),
        "first_tracked_overhead_pct": round(100 * (tracked[0]["epoch_s"] / base - 1), 2),
        "on_epoch_max_ms": round(max(r["on_epoch_max_ms"] for r in tracked), 3),
        "rounds_detail": {"untracked": plain, "tracked": tracked},
    }
    write_result("mlflow", figures)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    result = run(options.epochs, options.rounds)
    print({k: v for k, v in result.items() if k != "rounds_detail"})
