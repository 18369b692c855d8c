"""Benchmark: a batch of explanations fanned out over 1 and 2 ``cpu_processing`` processes,
against the old pattern, a sequential loop in one process (pipeline calls, no broker).

Every configuration does the same work per signal: read the window from the dataset file,
explain it, save the ``.npz`` and draw the ``.png``; then one aggregate plot per batch. The
model is an untrained default ``cnn1d`` (a method's cost does not depend on the weights) and
every process uses one torch thread, as one ``cpu_processing`` process per core should.
Worker start-up is outside the timing: each configuration first runs a warm-up batch on
other signals, so every process has loaded torch and the model. A batch is timed from
``explain_batch.send`` until its record says it is finalized.

Each worker configuration runs in a driver subprocess with its own var folder (SQLite
database and artifacts), so no explanation is found already stored. Run
``python -m bench.bench_xai_batch`` (uses the Redis database of ``redis_url``, flushed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import scratch_dir, write_result
from pipeline.domain import WINDOW_LENGTH

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATASET_ID = "ds-bench-xai"
EXPERIMENT_ID = "exp-bench-xai"


def _signals(split_counts: dict[str, int], split: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` windows of ``split`` as signal references."""
    windows = [(r, w) for r in range(split_counts[split]) for w in range(5)]
    if len(windows) < n:
        raise ValueError(f"split {split!r} has {len(windows)} windows, fewer than {n}")
    return [{"dataset_id": DATASET_ID, "split": split, "record": r, "window": w} for r, w in windows[:n]]


def _prepare(folder: Path) -> tuple[str, str, dict[str, int]]:
    """Generate the dataset and save an untrained default cnn1d; return their paths and split counts."""
    import torch

    from pipeline.datasets.generate import generate_dataset
    from pipeline.domain import CLASS_KEYS
    from pipeline.models import build_model
    from pipeline.signals.config import GeneratorConfig
    from pipeline.training.checkpoint import save_checkpoint

    produced = generate_dataset(GeneratorConfig(records_per_class=6, seed=0), folder, DATASET_ID, workers=1)
    torch.manual_seed(0)
    model_path = save_checkpoint(folder / "cnn1d.pt", build_model("cnn1d"), "cnn1d", {}, CLASS_KEYS, {})
    return str(produced.hdf5_path), str(model_path), dict(produced.split_counts)


def _fresh(params: dict[str, Any], repeat: int) -> dict[str, Any]:
    """The parameters of one repeat: another ``top_k`` makes it a new request (nothing stored
    is found), at the same cost (``top_k`` only sizes the summary)."""
    return {**params, "top_k": 5 + repeat}


def _sequential(dataset: str, model_path: str, signals: list[dict[str, Any]], method: str,
                params: dict[str, Any], out: Path, repeats: int) -> tuple[float, float, float]:
    """The old pattern: one process explains the signals one after the other.

    Returns the best of ``repeats`` runs: its seconds, CPU seconds and mean ``explain`` call (ms).
    """
    import torch

    from pipeline import xai
    from pipeline.datasets.hdf5 import read_split

    torch.set_num_threads(1)
    loaded = xai.get_model(model_path)

    def window(signal: dict[str, Any]):  # type: ignore[no-untyped-def]
        rows = read_split(dataset, signal["split"], slice(signal["record"], signal["record"] + 1))
        return rows.signals[0].reshape(-1, WINDOW_LENGTH)[signal["window"]]

    xai.explain(loaded.model, "cnn1d", window(signals[0]), method, params)  # warm-up
    runs = []
    for repeat in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        pairs, explain_ms = [], []
        for i, signal in enumerate(signals):
            x = window(signal)
            e = xai.explain(loaded.model, "cnn1d", x, method, _fresh(params, repeat))
            explain_ms.append(e.timings_ms["total_ms"])
            xai.save_explanation(out / f"{repeat}-{i}.npz", e)
            xai.plot_explanation(out / f"{repeat}-{i}.png", x, e)
            pairs.append((e.target_class, e.attributions))
        xai.plot_class_mean_attribution(out / f"{repeat}-class_mean.png", xai.mean_abs_attribution_by_class(pairs))
        runs.append((time.perf_counter() - start, time.process_time() - cpu, sum(explain_ms) / len(explain_ms)))
    return min(runs)


def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    """In a driver subprocess: record the data, start the workers, time a batch, stop them."""
    from actors.store.datasets import claim_dataset, complete_dataset
    from actors.store.db import get_database, migrate
    from actors.store.experiments import claim_experiment, complete_experiment
    from config.settings import get_settings

    settings = get_settings()
    migrate(settings.database_url)
    database = get_database(settings.database_url)
    claim_dataset(database, DATASET_ID, "bench", source="generator", name="bench")
    complete_dataset(database, DATASET_ID, "bench", path=spec["dataset"], split_counts=spec["split_counts"])
    claim_experiment(database, EXPERIMENT_ID, "bench", checkpoint_dir=str(settings.var_dir), spec={
        "dataset_id": DATASET_ID, "model_key": "cnn1d", "model_args": {}, "training_config": {}, "name": "bench",
        "campaign_id": None})
    complete_experiment(database, EXPERIMENT_ID, "bench", model_path=spec["model"])

    import actors.app  # noqa: F401  (the broker, after the database is at head)
    from actors.platform.fanout import get_fanout
    from actors.platform.jobs import get_job
    from actors.store.explanations import find_batch, find_explanations
    from actors.xai import explain_batch

    def batch(batch_id: str, signals: list[dict[str, Any]], params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        start = time.perf_counter()
        explain_batch.send(experiment_id=EXPERIMENT_ID, signals=signals, method=spec["method"], params=params,
                           batch_id=batch_id)
        deadline = time.monotonic() + 600
        # The fan-out's state in Redis, the last thing the finalize writes: a poll costs the
        # workers sharing these cores far less than a database query would.
        while (view := get_fanout(f"xai-{batch_id}")) is None or view.state != "completed":
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} did not finish in 600 s")
            time.sleep(0.02)
        return time.perf_counter() - start, find_batch(database, batch_id)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    with open(Path(settings.var_dir) / "workers.log", "ab") as log:
        workers = [subprocess.Popen(
            [str(BIN / "dramatiq"), "actors.app", "--queues", queue, "--processes", str(n), "--threads", str(threads)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ) for queue, n, threads in (("cpu_processing", spec["processes"], 1), ("high_priority", 1, 8))]
        try:
            batch("warm-up", spec["warm_up"], spec["params"])
            runs = []
            for repeat in range(spec["repeats"]):
                cpu = _group_cpu_s([w.pid for w in workers])
                seconds, record = batch(f"measured-{repeat}", spec["signals"], _fresh(spec["params"], repeat))
                runs.append((seconds, _group_cpu_s([w.pid for w in workers]) - cpu, record))
            seconds, cpu_s, record = min(runs, key=lambda run: run[0])
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(60)
    jobs = [get_job(member["job_id"]) for member in record["members"]]
    rows = find_explanations(database, [member["explanation_id"] for member in record["members"]])
    return {
        "seconds": seconds, "cpu_s": round(cpu_s, 2), "done": record["done"], "failed": record["failed"],
        "worker_processes_used": len({job.worker for job in jobs}),
        # Where the time goes: a member job's whole run vs the explain() call inside it.
        "member_job_ms_mean": round(sum(job.duration_ms or 0.0 for job in jobs) / len(jobs), 1),
        "explain_ms_mean": round(sum(r["summary"]["timings_ms"]["total_ms"] for r in rows.values()) / len(rows), 1),
    }


def _group_cpu_s(groups: list[int]) -> float:
    """CPU seconds (user + system) used so far by the live processes of these process groups.

    Linux only (``/proc``). Wall time on a shared machine says little about parallel work;
    CPU time does not depend on what else runs.
    """
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[2]) in groups:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run(n: int = 32, method: str = "integrated_gradients", params: dict[str, Any] | None = None,
        processes: tuple[int, ...] = (1, 2), repeats: int = 2,
        redis_url: str = "redis://127.0.0.1:6379/3") -> dict[str, Any]:
    """Time ``n`` explanations sequentially and as a batch on each worker count; write JSON; return it.

    Each figure is the best of ``repeats`` runs: the machine may be shared, and the best run
    is the least disturbed one.
    """
    from redis import Redis

    params = {"n_steps": 16} if params is None else params
    folder = scratch_dir("pfd-bench-xai-batch-")
    dataset, model, split_counts = _prepare(folder)
    signals, warm_up = _signals(split_counts, "test", n), _signals(split_counts, "train", 4 * max(processes))
    load_before = os.getloadavg()[0]
    sequential_s, sequential_cpu_s, sequential_explain_ms = _sequential(
        dataset, model, signals, method, params, folder / "sequential", repeats)
    redis = Redis.from_url(redis_url)
    batches = {}
    for count in processes:
        redis.flushdb()
        var = folder / f"workers-{count}"
        spec = {"dataset": dataset, "model": model, "split_counts": split_counts, "signals": signals,
                "warm_up": warm_up, "method": method, "params": params, "processes": count,
                "repeats": repeats}
        env = {**os.environ, "PFD_REDIS_URL": redis_url, "PFD_VAR_DIR": str(var), "PFD_LOG_JSON": "1",
               "PFD_WORKERS_RECORD_JOBS": "0"}
        done = subprocess.run([sys.executable, "-m", "bench.bench_xai_batch", "--drive", json.dumps(spec)],
                              cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        batches[count] = json.loads(done.stdout.strip().splitlines()[-1])
    redis.flushdb()
    figures: dict[str, Any] = {
        "signals": n, "method": method, "params": params, "window_samples": WINDOW_LENGTH, "repeats": repeats,
        "torch_threads_per_process": 1, "sequential_s": round(sequential_s, 2),
        "sequential_ms_per_explanation": round(1e3 * sequential_s / n, 1),
        "sequential_cpu_s": round(sequential_cpu_s, 2),
        "sequential_cores_used": round(sequential_cpu_s / sequential_s, 2),
        "sequential_explain_ms_mean": round(sequential_explain_ms, 1),
        # The machine may be shared: its load says how far to trust the ratios.
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    for count, outcome in batches.items():
        figures[f"workers_{count}"] = {
            **outcome, "seconds": round(outcome["seconds"], 2),
            "speedup_vs_sequential": round(sequential_s / outcome["seconds"], 2),
            # CPU the batch cost beyond the loop's: the fan-out's own price, whatever the load.
            "cpu_vs_sequential": round(outcome["cpu_s"] / sequential_cpu_s, 2),
            # Cores the batch actually got: on a busy machine, more processes need not get more.
            "cores_used": round(outcome["cpu_s"] / outcome["seconds"], 2),
        }
    if 1 in batches and 2 in batches:
        figures["speedup_2_vs_1_processes"] = round(batches[1]["seconds"] / batches[2]["seconds"], 2)
        figures["goal_speedup_2_processes"] = 1.7
        figures["meets_goal"] = sequential_s / batches[2]["seconds"] >= 1.7
    write_result("xai_batch", figures)
    return figures


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--drive":
        print(json.dumps(_drive(json.loads(sys.argv[2]))))
    else:
        print(json.dumps(run(), indent=2))
