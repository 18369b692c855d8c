"""HPO fan-out: one 8-trial campaign with 1 and with 2 ``gpu_training`` worker processes.

Each configuration runs in a fresh driver process with its own var folder (SQLite database,
Optuna sibling file, artifacts) on one Redis database: it starts the Procfile's
``high_priority`` line once and its ``gpu_training`` line once per worker, warms every worker
with a small campaign (torch and Optuna load on first use), then times the measured
campaign (three times; the best run is reported, the machine being shared) from the job
records: send -> first trial start, each wave's last trial end -> next wave's first start,
last trial end -> final callback. Workers run one torch thread each (``OMP_NUM_THREADS=1``),
so a worker process stands for one device, as on a GPU box. Run ``python -m bench.bench_hpo``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import scratch_dir, write_result
from bench.processes import procfile

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"lr": {"type": "float", "low": 3e-3, "high": 3e-2, "log": True},
         "kernel_size": {"type": "categorical", "choices": [3, 5, 7]}}
TRAINING = {"epochs": 10, "batch_size": 8, "scheduler": "none", "seed": 0}
# 16 records per class, ten epochs (about 3 s per trial on one thread): long enough that
# the fixed dispatch cost of a campaign does not hide what a second worker buys.
RECORDS_PER_CLASS = 16


def _spec(n_trials: int, parallelism: int, epochs: Any) -> dict[str, Any]:
    return {"model_key": "cnn1d", "model_args": {"width": 8, "depth": 2}, "method": "random", "seed": 0,
            "training": {**TRAINING, "epochs": epochs}, "n_trials": n_trials, "parallelism": parallelism,
            "space": SPACE}


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)
    return value


def _campaign(dataset_id: str, campaign_id: str, spec: dict[str, Any]) -> tuple[float, str, dict[str, Any]]:
    """Send a campaign, wait for it to complete; return (send time, its message id, final view)."""
    from actors.hpo import run_hpo_campaign
    from actors.store.campaigns import get_campaign
    from actors.store.db import get_database
    from config.settings import get_settings

    database = get_database(get_settings().database_url)
    sent = time.time()
    message = run_hpo_campaign.send(campaign_id=campaign_id, dataset_id=dataset_id, spec=spec)

    def done() -> dict[str, Any] | None:
        try:
            view = get_campaign(database, campaign_id)
        except LookupError:
            return None
        if view["status"] == "failed":
            raise RuntimeError(f"campaign {campaign_id} failed: {view['error']}")
        return view if view["status"] == "completed" else None

    return sent, message.message_id, _wait(done, 600, f"campaign {campaign_id}")


def _span(job: Any) -> tuple[float, float]:
    """A finished job's (start, end) in epoch seconds, as its worker recorded them."""
    if job.started_at is None or job.finished_at is None:
        raise RuntimeError(f"job {job.message_id} has no recorded start or end ({job.state})")
    return float(job.started_at), float(job.finished_at)


def _finalize_spans(campaign_id: str) -> list[tuple[float, float]]:
    """(start, end) of the campaign's finalize jobs, read from the job hashes in Redis."""
    from actors.platform.jobs import get_job, job_store

    store = job_store()
    spans = []
    for key in store.redis.scan_iter(f"{store.prefix}:job:*"):
        actor, result, message_id = store.redis.hmget(key, "actor", "result", "message_id")
        if actor == b"finalize_hpo_campaign" and result and json.loads(result).get("campaign_id") == campaign_id:
            spans.append(_span(get_job(message_id.decode() if isinstance(message_id, bytes) else str(message_id))))
    return sorted(spans)


def _timings(sent: float, campaign_job: str, view: dict[str, Any]) -> dict[str, Any]:
    from actors.platform.jobs import get_job

    waves, trials, workers = [], [], set()
    for wave in view["waves"]:
        jobs = [get_job(view["trials"][str(n)]["message_id"]) for n in wave["trials"]]
        spans = [_span(job) for job in jobs]
        workers |= {job.worker for job in jobs}
        trials += spans
        waves.append((min(start for start, _ in spans), max(end for _, end in spans)))
    finals = _finalize_spans(view["campaign_id"])
    last_end, done = waves[-1][1], finals[-1][1]
    gaps = [waves[i + 1][0] - waves[i][1] for i in range(len(waves) - 1)]
    busy = sum(end - start for start, end in trials)
    campaign_start, campaign_end = _span(get_job(campaign_job))
    return {
        "wall_s": round(done - sent, 3),
        "trial_busy_s": round(busy, 3),
        "mean_trial_s": round(busy / len(trials), 3),
        "waves": len(waves),
        "workers_used": len(workers),
        "send_to_first_trial_start_s": round(waves[0][0] - sent, 3),
        "last_trial_end_to_finalize_start_s": round(finals[-1][0] - last_end, 3),
        "last_trial_end_to_campaign_done_s": round(done - last_end, 3),
        "mean_wave_gap_s": round(sum(gaps) / len(gaps), 3) if gaps else None,
        "finalize_runs": len(finals),
        # The actors' own work inside those overheads; the rest is dispatch (queue polling).
        "run_campaign_job_s": round(campaign_end - campaign_start, 3),
        "mean_finalize_job_s": round(sum(end - start for start, end in finals) / len(finals), 3),
    }


def _drive(gpu_workers: int, n_trials: int, parallelism: int, repeats: int) -> dict[str, Any]:
    """One configuration, in this (fresh) process: workers up, warm-up, ``repeats`` campaigns, workers down."""
    from actors.store.datasets import claim_dataset, complete_dataset
    from actors.store.db import get_database, migrate
    from config.settings import get_settings
    from pipeline.artifacts import file_sha256
    from pipeline.datasets.generate import generate_dataset
    from pipeline.signals.config import GeneratorConfig

    settings = get_settings()
    migrate(settings.database_url)
    import actors.app  # noqa: F401  (the producer's broker: sends validate and record jobs)
    from actors.platform.broker.connection import redis_client

    redis = redis_client(settings.redis_url)
    redis.flushdb()
    noise_off = {layer: False for layer in ("measurement", "emi", "pink", "drift", "quantization", "sensor_drift",
                                            "aliasing", "impulses")}
    config = GeneratorConfig.from_dict({"fault_types": ["sain", "desequilibre", "oilwhirl"], "records_per_class": RECORDS_PER_CLASS,
                                        "noise": noise_off, "seed": 1})
    produced = generate_dataset(config, settings.artifact_root / "datasets", "ds-bench", workers=1)
    database = get_database(settings.database_url)
    claim_dataset(database, "ds-bench", "bench", source="generator", name="ds-bench")
    path = str(produced.hdf5_path)
    complete_dataset(database, "ds-bench", "bench", path=path, checksum=file_sha256(path),
                     n_records=produced.n_records, class_counts=produced.class_counts,
                     split_counts=produced.split_counts, config_hash=produced.config_hash)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    commands = [procfile("high_priority")] + [procfile("gpu_training")] * gpu_workers
    with open(settings.var_dir / "workers.log", "ab") as log:
        processes = [subprocess.Popen(c, shell=True, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True) for c in commands]
        try:
            _wait(lambda: len(list(redis.scan_iter("pfd:worker:*"))) >= len(commands), 180, "the workers")
            _campaign("ds-bench", "bench-warm", _spec(2 * gpu_workers, 2 * gpu_workers, 1))
            load = os.getloadavg()[0]  # other work on the machine competes for the same cores
            runs = []
            for repeat in range(repeats):  # the same campaign again: the best run is the least disturbed
                sent, message_id, view = _campaign("ds-bench", f"bench-hpo-{repeat}",
                                                   _spec(n_trials, parallelism, TRAINING["epochs"]))
                runs.append(_timings(sent, message_id, view))
            best = min(runs, key=lambda r: r["wall_s"])
            return {"gpu_workers": gpu_workers, **best, "walls_s": [r["wall_s"] for r in runs],
                    "load_average_at_start": load}
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
            for process in processes:
                process.wait(60)


def run(n_trials: int = 8, parallelism: int = 4, repeats: int = 3, redis_url: str | None = None) -> dict[str, Any]:
    """Time the campaign with 1 and 2 gpu_training workers (best of ``repeats``); write ``bench/results/hpo_fanout.json``."""
    redis_url = redis_url or os.environ.get("PFD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
    runs = {}
    for workers in (1, 2):
        var = str(scratch_dir(f"pfd-bench-hpo-{workers}-"))
        env = {**os.environ, "PFD_REDIS_URL": redis_url, "PFD_VAR_DIR": var, "PFD_LOG_JSON": "1"}
        code = f"import json; from bench.bench_hpo import _drive; print(json.dumps(_drive({workers}, {n_trials}, {parallelism}, {repeats})))"
        out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"the {workers}-worker run failed:\n{out.stderr[-3000:]}")
        runs[workers] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{workers} gpu worker(s): {runs[workers]['wall_s']:.1f} s")
    figures = {
        "trials": n_trials, "parallelism": parallelism, "repeats": repeats, "model": "cnn1d width 8 depth 2",
        "training": TRAINING, "dataset": f"3 classes x {RECORDS_PER_CLASS} records, noise off", "torch_threads_per_worker": 1,
        "database": "SQLite (default)", "one_worker": runs[1], "two_workers": runs[2],
        "speedup": round(runs[1]["wall_s"] / runs[2]["wall_s"], 3), "goal_speedup": 1.7,
    }
    figures["meets_goal"] = figures["speedup"] >= 1.7
    write_result("hpo_fanout", figures)
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
