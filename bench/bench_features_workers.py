"""Feature extraction through the actor, in windows per second, with 1 and with 2 worker processes.

Each run starts the Procfile's ``cpu_processing`` line with ``PFD_CPU_PROCESSES`` set to 1
or 2 (plus the ``high_priority`` line, which merges the shards), warms the processes up with
one extraction, then times one sharded ``extract_features`` from send to the feature set
recorded completed. Every run extracts a dataset record of its own (the same file under
another id), so nothing is reused. The producer runs in a subprocess with the benchmark's
environment, so the broker it builds never depends on what this process imported before.
Run ``python -m bench.bench_features_workers [records_per_class]``; the Redis database comes
from ``PFD_BENCH_REDIS_URL`` (default db 11) and must be one no other worker listens on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import scratch_dir, write_result
from bench.processes import procfile

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
NOISE_OFF = {layer: False for layer in (
    "measurement", "emi", "pink", "drift", "quantization", "sensor_drift", "aliasing", "impulses")}


def _prepare(env: dict[str, str], records_per_class: int, ids: list[str]) -> dict[str, Any]:
    """Migrate the benchmark's database, generate one dataset, record it under every id."""
    code = f"""
import json
from pathlib import Path
from actors.store.datasets import claim_dataset, complete_dataset
from actors.store.db import get_database, migrate
from config.settings import get_settings
from pipeline.artifacts import file_sha256
from pipeline.datasets.generate import generate_dataset
from pipeline.signals.config import GeneratorConfig
settings = get_settings()
migrate(settings.database_url)
config = GeneratorConfig.from_dict({{"records_per_class": {records_per_class}, "noise": {NOISE_OFF!r}, "seed": 5}})
made = generate_dataset(config, settings.artifact_root / "datasets", "bench-features", workers=1)
database = get_database(settings.database_url)
for dataset_id in {ids!r}:
    claim_dataset(database, dataset_id, "bench", source="generator", name=dataset_id)
    complete_dataset(database, dataset_id, "bench", path=made.hdf5_path, checksum=file_sha256(made.hdf5_path),
                     n_records=made.n_records, split_counts=made.split_counts, class_counts=made.class_counts)
print(json.dumps({{"records": made.n_records, "split_counts": made.split_counts}}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _extract(env: dict[str, str], dataset_id: str, records_per_shard: int) -> dict[str, Any]:
    """Send ``extract_features`` from a producer subprocess; seconds until the set is recorded."""
    code = f"""
import json, time
import actors.app
from actors.features import extract_features
from actors.store.analyses import get_feature_set
from actors.store.db import get_database
from config.settings import get_settings
database = get_database(get_settings().database_url)
started = time.perf_counter()
result = extract_features.send(dataset_id={dataset_id!r}, records_per_shard={records_per_shard})
fs_id = "fs-{dataset_id}-all"
while True:
    try:
        record = get_feature_set(database, fs_id)
    except LookupError:
        record = {{"status": "queued"}}
    if record["status"] in ("completed", "failed"):
        break
    if time.perf_counter() - started > 900:
        raise TimeoutError("feature extraction did not finish in 900 s")
    time.sleep(0.02)
print(json.dumps({{"seconds": time.perf_counter() - started, "status": record["status"],
                  "n_windows": record.get("n_windows"), "shards": record.get("shards"), "error": record.get("error")}}))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    if outcome["status"] != "completed":
        raise RuntimeError(f"extraction of {dataset_id} ended {outcome['status']}: {outcome['error']}")
    return outcome


def _workers(env: dict[str, str], processes: int, log: Any) -> list[subprocess.Popen]:
    lines = [procfile("cpu_processing"), procfile("high_priority")]
    worker_env = {**env, "PFD_CPU_PROCESSES": str(processes)}
    return [subprocess.Popen(line, shell=True, cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True) for line in lines]


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for worker in workers:
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)


def run(
    records_per_class: int = 8, records_per_shard: int = 4, repeats: int = 1, redis_url: str | None = None,
) -> dict[str, Any]:
    """Time sharded extractions with 1 and with 2 ``cpu_processing`` processes; write JSON.

    Wall time is the figure (send to recorded), the best of ``repeats`` runs (the least
    disturbed on a shared machine); the load average is reported too, since other work on
    the machine takes cores from the 2-process run first.
    """
    var = str(scratch_dir("pfd-bench-features-workers-"))
    env = {**os.environ, "PFD_VAR_DIR": var, "PFD_DATABASE_URL": f"sqlite:///{var}/bench.sqlite3",
           "PFD_REDIS_URL": redis_url or os.environ.get("PFD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
           "PFD_LOG_LEVEL": "WARNING", "PFD_LOG_JSON": "1", "PFD_GENERATION_WORKERS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    counts = (1, 2)
    ids = [f"bench-warm-{n}" for n in counts] + [f"bench-timed-{n}-{r}" for n in counts for r in range(repeats)]
    dataset = _prepare(env, records_per_class, ids)
    timings: dict[int, dict[str, Any]] = {}
    with open(Path(var) / "workers.log", "ab") as log:
        for processes in counts:
            workers = _workers(env, processes, log)
            try:
                _extract(env, f"bench-warm-{processes}", records_per_shard)  # imports, FFT plans, caches
                runs = [_extract(env, f"bench-timed-{processes}-{r}", records_per_shard) for r in range(repeats)]
                timings[processes] = min(runs, key=lambda outcome: outcome["seconds"])
            finally:
                _stop(workers)
    windows = timings[1]["n_windows"]
    rates = {n: windows / timings[n]["seconds"] for n in counts}
    figures = {
        "records": dataset["records"], "windows": windows, "records_per_shard": records_per_shard,
        "shards": timings[1]["shards"], "repeats": repeats,
        "one_process_s": round(timings[1]["seconds"], 2), "two_processes_s": round(timings[2]["seconds"], 2),
        "one_process_windows_per_s": round(rates[1], 1), "two_processes_windows_per_s": round(rates[2], 1),
        "speedup": round(rates[2] / rates[1], 3), "goal_speedup": 1.7,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    figures["meets_goal"] = figures["speedup"] >= 1.7
    write_result("features_workers", figures)
    return figures


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 8), indent=2))
