"""What the dispatch benchmarks share: an environment, a producer run, a worker started and drained."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["BIN", "ROOT", "bench_env", "drain_rate", "migrate", "procfile", "produce", "running", "wait_for"]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def procfile(name: str, *, extra_modules: tuple[str, ...] = ()) -> str:
    """The Procfile's command for process ``name``, loading ``extra_modules`` beside ``actors.app``."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip().replace("actors.app", " ".join(("actors.app", *extra_modules)))
    raise KeyError(f"no {name!r} line in the Procfile")


def bench_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of every process of one benchmark: its Redis database, a fresh var folder."""
    var = tempfile.mkdtemp(prefix="pfd-bench-")
    return {**os.environ, "PFD_REDIS_URL": redis_url, "PFD_VAR_DIR": var, "PFD_LOG_JSON": "1",
            "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), **extra}


def migrate(env: dict[str, str]) -> None:
    """Bring the benchmark's database to head."""
    subprocess.run([sys.executable, "-c", "from actors.store.db import migrate; from config.settings import get_settings; "
                    "migrate(get_settings().database_url)"], cwd=ROOT, env=env, check=True)


def produce(code: str, env: dict[str, str]) -> dict[str, Any]:
    """Run producer ``code`` in a fresh interpreter; it prints one JSON object last, returned here."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.005) -> None:
    """Poll ``predicate`` until true; raise ``TimeoutError`` naming ``what`` past ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def running(command: list[str] | str, env: dict[str, str], *, log_name: str = "worker") -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own process group for the block; SIGTERM the group after it."""
    log = tempfile.NamedTemporaryFile(prefix=f"pfd-bench-{log_name}-", suffix=".log", delete=False)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, shell=isinstance(command, str))
    try:
        yield process
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()


def drain_rate(remaining: Callable[[], int], n: int, worker: subprocess.Popen, *, timeout: float = 600) -> float:
    """Messages per second from the first message taken to the last one done.

    ``remaining`` counts the messages not yet finished (queued, prefetched or running).
    """
    def alive() -> None:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")

    wait_for(lambda: alive() or remaining() < n, timeout=120, what="the worker to take its first message")
    started, left = time.perf_counter(), remaining()
    wait_for(lambda: alive() or remaining() == 0, timeout=timeout, what="the queue to drain")
    return left / (time.perf_counter() - started)
