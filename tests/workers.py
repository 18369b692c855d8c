"""Start the Procfile's worker lines as real processes, the way a Procfile runner does."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from redis import Redis

from actors.platform.queue_depths import queue_depths
from tests import env
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def procfile_lines() -> dict[str, str]:
    """Return the Procfile as ``{process name: command}``."""
    lines = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            lines[name.strip()] = command.strip()
    return lines


def _group_gone(process: subprocess.Popen, timeout: float) -> bool:
    """Wait until no process of ``process``'s group is left; return whether that happened in time.

    The group leader is reaped as we go: a zombie still counts as a member of its group.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


class Workers:
    """A set of running Procfile processes whose output goes to one log file each."""

    def __init__(self, log_dir: Path, *, extra_modules: tuple[str, ...] = ("tests.probe_actors",), extra_env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.extra_modules = extra_modules
        self.extra_env = extra_env or {}
        self.processes: dict[str, subprocess.Popen] = {}

    def command(self, name: str) -> str:
        """The Procfile's command for ``name``, loading the test actors too."""
        command = procfile_lines()[name]
        return re.sub(r"\bactors\.app\b", " ".join(("actors.app", *self.extra_modules)), command)

    def cpu_command(self, threads: int) -> str:
        """The cpu_processing line as one process of ``threads`` threads (prefetch two each)."""
        command = self.command("cpu_processing").replace("--threads 1", f"--threads {threads}")
        command = command.replace("dramatiq_queue_prefetch=1", f"dramatiq_queue_prefetch={threads * 2}")
        return command.replace("${PFD_CPU_PROCESSES:+--processes $PFD_CPU_PROCESSES}", "--processes 1")

    def start(self, name: str, *, tag: str | None = None, command: str | None = None) -> subprocess.Popen:
        """Start one Procfile process in its own process group."""
        process_env = {
            **os.environ, **env.TEST_ENV, **self.extra_env,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PFD_TEST_PROCESS_TAG": tag or name,
        }
        log = open(self.log_path(tag or name), "ab")
        process = subprocess.Popen(
            command or self.command(name), shell=True, cwd=ROOT, env=process_env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.processes[tag or name] = process
        return process

    def log_path(self, name: str) -> Path:
        """Where process ``name`` writes its output."""
        return self.log_dir / f"{name}.log"

    def refused_boot(self, on: Callable[[str], str] = lambda command: command) -> tuple[list[str], str]:
        """Start a one-thread ``cpu_processing`` worker (run through ``on``, such as a test host's
        ``private``) that is expected to refuse to boot; wait for it to exit non-zero by itself;
        return the reasons of its ``worker.refused`` lines and its whole log."""
        process = self.start("cpu_processing", command=on(self.cpu_command(threads=1)))
        wait_until(lambda: process.poll() is not None, timeout=60, what="the worker to stop by itself")
        assert process.returncode != 0
        log = self.log("cpu_processing")
        reasons = [json.loads(line)["reason"] for line in log.splitlines() if '"worker.refused"' in line]
        return reasons, log

    def log(self, name: str) -> str:
        """Everything process ``name`` has written so far."""
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to the whole process group of ``name``, whose leader (the shell that
        started it) may be gone while its workers still drain."""
        with contextlib.suppress(ProcessLookupError):  # the whole group is gone: nothing to signal
            os.killpg(self.processes[name].pid, sig)

    def pause_idle(self, queue: str, redis: Redis, timeout: float = 120.0) -> None:
        """SIGSTOP the worker of ``queue`` once it holds none of its messages (nothing queued,
        nothing prefetched or running): a paused worker must not sit on a message, and a
        backlog left by earlier tests must not queue up in front of a test's own messages."""
        def idle() -> bool:
            depth = queue_depths(redis, (queue,))[0]
            return depth.queued == 0 and depth.in_flight == 0

        wait_until(idle, timeout=timeout, what=f"the shared {queue} worker to drain its queue",
                   state=lambda: queue_depths(redis, (queue,))[0])
        self.signal(queue, signal.SIGSTOP)

    def stop(self, name: str, timeout: float = 30.0) -> int | None:
        """Stop a process as a Procfile runner does (SIGTERM, then SIGKILL), return its code."""
        process = self.processes.pop(name, None)
        if process is None:
            return None
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return process.wait()
        # The group, not just the shell that started it: workers drain after the shell is gone.
        if not _group_gone(process, timeout):
            os.killpg(process.pid, signal.SIGKILL)
            _group_gone(process, 10)
        return process.wait()

    def stop_all(self) -> None:
        """Stop every process that is still running, all at once: each drains on its own, and
        one after another the session's workers took 17 s to stop, at once 5 s."""
        names = list(self.processes)
        with ThreadPoolExecutor(max_workers=max(len(names), 1)) as pool:
            list(pool.map(self.stop, names))


def message_refusals(log: str) -> dict[str, str]:
    """The reason of each message a worker refused unread (``message.refused``), by Redis id, from its log."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{") and "message.refused" in line]
    return {line["redis_id"]: line["reason"] for line in lines if "redis_id" in line}
