"""What the dispatch benchmarks share: an environment, a producer run, a worker started and drained."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import scratch_dir

__all__ = ["BIN", "ROOT", "Drain", "bench_env", "cpu_seconds", "drain", "migrate", "own_redis", "procfile", "produce",
           "running", "wait_for"]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def procfile(name: str, *, extra_modules: tuple[str, ...] = (), root: Path = ROOT) -> str:
    """The Procfile's command for process ``name`` (in checkout ``root``), loading ``extra_modules`` beside ``actors.app``."""
    for line in (root / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip().replace("actors.app", " ".join(("actors.app", *extra_modules)))
    raise KeyError(f"no {name!r} line in the Procfile")


def bench_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of every process of one benchmark: its Redis database, a fresh var folder."""
    var = str(scratch_dir("pfd-bench-"))
    return {**os.environ, "PFD_REDIS_URL": redis_url, "PFD_VAR_DIR": var, "PFD_LOG_JSON": "1",
            "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), **extra}


def migrate(env: dict[str, str], *, cwd: Path = ROOT) -> None:
    """Bring the benchmark's database to head (the head of the checkout at ``cwd``)."""
    subprocess.run([sys.executable, "-c", "from actors.store.db import migrate; from config.settings import get_settings; "
                    "migrate(get_settings().database_url)"], cwd=cwd, env=env, check=True)


def produce(code: str, env: dict[str, str], *, cwd: Path = ROOT) -> dict[str, Any]:
    """Run producer ``code`` in a fresh interpreter; it prints one JSON object last, returned here."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.005) -> None:
    """Poll ``predicate`` until true; raise ``TimeoutError`` naming ``what`` past ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def running(command: list[str] | str, env: dict[str, str], *, log_name: str = "worker",
            cwd: Path = ROOT) -> Iterator[subprocess.Popen]:
    """Run ``command`` (from the checkout at ``cwd``) in its own process group for the block; SIGTERM the group after it.

    Its output goes to a log file that is deleted after the block, unless the block raised:
    then the log is kept for the diagnosis and its path printed.
    """
    log = tempfile.NamedTemporaryFile(prefix=f"pfd-bench-{log_name}-", suffix=".log", delete=False)
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, shell=isinstance(command, str))
    failed = True
    try:
        yield process
        failed = False
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
        if failed:
            print(f"the {log_name} log is kept: {log.name}", file=sys.stderr)
        else:
            os.unlink(log.name)


@contextmanager
def own_redis() -> Iterator[str]:
    """A ``redis-server`` of the benchmark's own on a free port, for the block; yields its URL.

    For a benchmark that must not share a Redis database with anything else: another run's
    ``flushdb`` or workers would take its messages and heartbeats.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="pfd-bench-redis-")
    server = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", folder,
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _answers(url), timeout=20, what=f"redis-server on port {port}", interval=0.05)
        yield url
    finally:
        server.terminate()
        server.wait(20)


def _answers(url: str) -> bool:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        return bool(Redis.from_url(url).ping())
    except RedisConnectionError:
        return False


# The servers every stack talks to; their CPU is part of what a message costs.
SERVERS = ("redis-server", "postgres")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process group and each server.

    ``groups`` maps a name to a process group id (``running`` starts each command in its
    own group, so a worker's forked processes count with it). Servers are found by
    program name, ``driver`` is this process. Read from ``/proc``.
    """
    totals = dict.fromkeys([*groups, *SERVERS, "driver"], 0.0)
    by_group = {pgid: name for name, pgid in groups.items()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited while we looked
            continue
        program = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
        if int(entry.name) == os.getpid():
            totals["driver"] += seconds
        elif int(fields[2]) in by_group:
            totals[by_group[int(fields[2])]] += seconds
        elif program in SERVERS:
            totals[program] += seconds
    return totals


@dataclass(frozen=True)
class Drain:
    """How fast a worker drained its queue, and what each message cost in CPU, by process."""

    rate: float
    cpu_us_per_message: dict[str, float] = field(default_factory=dict)


def drain(remaining: Callable[[], int], n: int, worker: subprocess.Popen, *, groups: dict[str, int] | None = None,
          timeout: float = 600) -> Drain:
    """Messages per second from the first message taken to the last one done, and their CPU cost.

    ``remaining`` counts the messages not yet finished (queued, prefetched or running).
    ``groups`` names the process groups to account CPU to (default: the worker's), from
    the first message taken to the last one done, so start-up costs are left out.
    """
    def alive() -> None:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")

    groups = groups or {"worker": worker.pid}
    wait_for(lambda: alive() or remaining() < n, timeout=120, what="the worker to take its first message")
    started, left, cpu_before = time.perf_counter(), remaining(), cpu_seconds(groups)
    # Polled every 20 ms, not 5: at 5 ms the polling cost 36 us of CPU a message, taken
    # from the cores the stack runs on; 20 ms is under 0.5 % of any drain measured here.
    wait_for(lambda: alive() or remaining() == 0, timeout=timeout, what="the queue to drain", interval=0.02)
    elapsed, cpu_after = time.perf_counter() - started, cpu_seconds(groups)
    cost = {name: round(1e6 * (cpu_after[name] - cpu_before[name]) / left, 1) for name in cpu_after}
    return Drain(rate=left / elapsed, cpu_us_per_message=cost)
