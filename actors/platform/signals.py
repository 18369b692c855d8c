"""Signal handlers that nothing they interrupt can block.

A Python signal handler runs in the main thread between two bytecodes, wherever that
thread happens to be: inside a log write that holds a lock, inside an ``Event``'s
condition. A handler that logs, takes a lock or sets an ``Event`` can then wait for a lock
its own thread holds, forever (a worker that was told to stop and kept taking jobs). So the
handler installed here does one thing, a single ``os.write`` of the signal's number to a
pipe; a daemon thread reads the pipe and runs the reaction, where waiting is harmless.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable

import structlog

__all__ = ["defer_signals", "stop_on_signals"]


def defer_signals(signals: Iterable[int], react: Callable[[int], None], *, name: str = "pfd-signals") -> None:
    """Install handlers for ``signals`` that hand each delivery to ``react(signum)`` on a thread.

    ``react`` runs on one daemon thread, in the order the signals arrived, and may log,
    lock and block. Call from the main thread (only it may install handlers).
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def handler(signum: int, frame: object) -> None:
        try:
            os.write(write_fd, bytes((signum,)))
        except BlockingIOError:
            # 64 KiB of deliveries are waiting unread: the reader sees this signal among them.
            pass

    def read_deliveries() -> None:
        log = structlog.get_logger("pfd.signals")
        while data := os.read(read_fd, 256):
            for signum in data:
                try:
                    react(signum)
                except Exception:
                    # Logged, and the next delivery is still handled: one failed reaction
                    # must not leave the process deaf to the signals that follow.
                    log.exception("signal.reaction_failed", signal=signal.Signals(signum).name)

    threading.Thread(target=read_deliveries, name=name, daemon=True).start()
    for signum in signals:
        signal.signal(signum, handler)


def stop_on_signals(signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> threading.Event:
    """Return an event that is set when one of ``signals`` arrives (a long-running command's stop)."""
    stop = threading.Event()
    defer_signals(signals, lambda _: stop.set(), name="pfd-stop")
    return stop
