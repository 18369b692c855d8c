"""Run one tool as a subprocess: argument list, own process group, time limit, capped output.

Never a shell: the argument list goes to ``execve`` as is, so nothing in a path or an
expression is ever interpreted. The child leads its own process group (its own session),
so a time limit or a cancellation kills the whole tree it started with one ``killpg``,
grandchildren included. Output is pumped into log files up to a cap while the child
runs, so a chatty tool can neither fill the disk nor block on a full pipe.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import StopRequested
from pipeline.progress import StopFn, never_stop

__all__ = [
    "DEFAULT_MAX_LOG_BYTES",
    "CommandResult",
    "LineTail",
    "cap_text",
    "clean_env",
    "keep_files",
    "kill_process_group",
    "run_command",
    "run_dir",
    "tail_file",
    "write_report",
]

DEFAULT_MAX_LOG_BYTES = 8 * 1024 * 1024
# Variables a tool needs to run at all. Everything else (PFD_* settings with their secrets,
# an outer pytest's PYTEST_*/COV_CORE_* variables) stays out of the child's environment.
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME")
_TERM_GRACE_S = 1.0
_GONE_WAIT_S = 5.0


@dataclass(frozen=True)
class CommandResult:
    """How a command ended: exit code (``None`` when it was killed at its time limit)."""

    argv: tuple[str, ...]
    returncode: int | None
    timed_out: bool
    duration_s: float
    stdout_path: Path
    stderr_path: Path | None
    dropped_bytes: int

    def output(self, max_chars: int = 4_000) -> str:
        """The end of the command's output, at most ``max_chars`` characters."""
        return tail_file(self.stdout_path, max_chars)


def cap_text(text: str, max_chars: int) -> str:
    """Return ``text`` cut to ``max_chars`` characters, saying how much was cut."""
    if len(text) <= max_chars:
        return text
    note = f"... [{len(text) - max_chars} more characters]"
    return text[: max(max_chars - len(note), 0)] + note


def tail_file(path: Path, max_chars: int) -> str:
    """The last ``max_chars`` characters of a text file (empty when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            # Four bytes per character at most in UTF-8.
            handle.seek(max(size - 4 * max_chars, 0))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return text[-max_chars:]


def clean_env(*, python: str, tmp_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for a tool: ``PATH`` led by ``python``'s folder, a private TMPDIR."""
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env["PATH"] = os.pathsep.join(p for p in (str(Path(python).parent), env.get("PATH", os.defpath)) if p)
    # Temporary files of the run (pytest's tmp_path included) stay in its own folder.
    env["TMPDIR"] = str(tmp_dir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


@contextmanager
def run_dir(base: Path | None = None) -> Iterator[Path]:
    """A private folder for one run (with a ``tmp`` folder inside), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="pfd-quality-", dir=base))
    (path / "tmp").mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def keep_files(source: Path, names: Sequence[str], target: Path | None) -> list[Path]:
    """Copy the named files of a run folder that exist into ``target``; return the copies."""
    if target is None:
        return []
    from pipeline.artifacts import atomic_path

    target.mkdir(parents=True, exist_ok=True)
    kept = []
    for name in names:
        if (source / name).is_file():
            with atomic_path(target / name) as tmp:
                shutil.copyfile(source / name, tmp)
            kept.append(target / name)
    return kept


def write_report(target: Path, report: Mapping[str, object], name: str = "report.json") -> Path:
    """Write a full report as JSON into the artifact folder ``target`` (atomically)."""
    from pipeline.artifacts import atomic_file

    with atomic_file(target / name) as handle:
        handle.write(json.dumps(report, indent=2, default=str).encode("utf-8"))
    return target / name


class LineTail:
    """Complete lines appended to a file since the last read (a partial last line waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[str]:
        """Return the complete new lines."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        return [chunk.decode("utf-8", errors="replace") for chunk in chunks]


class _Pump(threading.Thread):
    """Copies a child's pipes into log files up to a shared byte cap, then only counts."""

    def __init__(self, streams: dict[int, BinaryIO], max_bytes: int) -> None:
        super().__init__(daemon=True, name="quality-output-pump")
        self.streams = streams
        self.remaining = max_bytes
        self.dropped = 0
        self.stop = threading.Event()

    def run(self) -> None:
        open_fds = set(self.streams)
        while open_fds:
            ready, _, _ = select.select(list(open_fds), [], [], 0.2)
            if not ready and self.stop.is_set():
                # The tree was killed; a process that escaped the group could hold the
                # pipe open for ever, so stop once nothing more arrives.
                break
            for fd in ready:
                data = os.read(fd, 65_536)
                if not data:
                    open_fds.discard(fd)
                    continue
                kept = data[: max(self.remaining, 0)]
                self.remaining -= len(kept)
                self.dropped += len(data) - len(kept)
                if kept:
                    self.streams[fd].write(kept)
                    self.streams[fd].flush()


def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path | None = None,
    timeout_s: float,
    should_stop: StopFn = never_stop,
    on_poll: Callable[[], None] | None = None,
    poll_s: float = 0.2,
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
) -> CommandResult:
    """Run ``argv`` (no shell) until it exits, passes ``timeout_s`` or is asked to stop.

    Output goes to ``stdout_path`` (stderr too, unless ``stderr_path`` is given), at most
    ``max_log_bytes`` in all. ``on_poll`` runs about every ``poll_s`` seconds and once at
    the end (to tail progress files). However the run ends, even by an exception raised
    into this thread, the child's whole process group is killed before this returns.

    Raises:
        StopRequested: ``should_stop()`` answered true; the tree was killed.
        FileNotFoundError: the program does not exist.
    """
    argv = tuple(argv)
    if not argv or not all(isinstance(arg, str) for arg in argv):
        raise TypeError("argv must be a non-empty sequence of strings")
    started = time.monotonic()
    with open(stdout_path, "wb") as out, open(stderr_path or os.devnull, "wb") as err:
        process = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr_path else subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
        assert process.stdout is not None  # for mypy: stdout=PIPE above sets it
        streams: dict[int, BinaryIO] = {process.stdout.fileno(): out}
        if process.stderr is not None:
            streams[process.stderr.fileno()] = err
        pump = _Pump(streams, max_log_bytes)
        pump.start()
        timed_out = False
        try:
            while _running(process):
                if on_poll is not None:
                    on_poll()
                if should_stop():
                    raise StopRequested(f"{Path(argv[0]).name} stopped on request")
                if time.monotonic() - started >= timeout_s:
                    timed_out = True
                    break
                time.sleep(poll_s)
        finally:
            # Also after a normal exit: a test may have left a background child behind.
            kill_process_group(process)
            pump.stop.set()
            pump.join(timeout=5.0)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
    if on_poll is not None:
        on_poll()
    return CommandResult(
        argv=argv, returncode=None if timed_out else process.returncode, timed_out=timed_out,
        duration_s=time.monotonic() - started, stdout_path=stdout_path, stderr_path=stderr_path,
        dropped_bytes=pump.dropped,
    )


def kill_process_group(process: subprocess.Popen, *, grace_s: float = _TERM_GRACE_S) -> bool:
    """Kill the process group ``process`` leads (TERM, then KILL); True once it is gone.

    Descendants that left the group (``setsid``, ``start_new_session``) are found through
    ``/proc`` while they still hang below the leader, and killed with it. Waits a few
    seconds for every group member to disappear, since a killed grandchild is reaped by
    init only after its parent has died.
    """
    pgid = process.pid
    strays: dict[int, int] = {}
    if _running(process):
        strays = _descendants(pgid)
        _signal_group(pgid, signal.SIGTERM)
        _signal_strays(strays, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _running(process) and time.monotonic() < deadline:
            time.sleep(0.02)
    _signal_group(pgid, signal.SIGKILL)
    _signal_strays(strays, signal.SIGKILL)
    # Reaped only now: until here the leader (if only as a zombie) kept its pid, so the
    # group id signalled above could not have been handed to an unrelated process.
    process.wait()
    deadline = time.monotonic() + _GONE_WAIT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _running(process: subprocess.Popen) -> bool:
    """True while the child has not exited. Never reaps it (``WNOWAIT``), so its pid stays reserved."""
    if process.returncode is not None:
        return False
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def _proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, process group, start time) of a process from ``/proc``, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[1]), int(fields[2]), int(fields[19])


def _descendants(pid: int) -> dict[int, int]:
    """Descendants of ``pid`` in another process group, as {pid: start time}; {} without /proc."""
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return {}
    stats = {p: st for p in pids if (st := _proc_stat(p)) is not None}
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in stats.items():
        children.setdefault(parent, []).append(child)
    found: dict[int, int] = {}
    stack = list(children.get(pid, []))
    while stack:
        current = stack.pop()
        if stats[current][1] != pid:
            found[current] = stats[current][2]
        stack.extend(children.get(current, []))
    return found


def _signal_strays(strays: dict[int, int], sig: int) -> None:
    """Signal each stray process that is still the one seen (same start time: no reused pid)."""
    for pid, started in strays.items():
        stat = _proc_stat(pid)
        if stat is not None and stat[2] == started:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
