"""A test hook: a signal delivered from inside a log write, while the write holds its lock.

``signal_inside_log_writes`` wraps ``os.write`` so that a write to standard error whose text
matches sends a signal to this process first. CPython runs the Python handler at the next
bytecode, still inside the write and its lock: the moment a supervisor's second SIGTERM
landed in the worker that deadlocked. Loaded into a worker as an extra module
(``dramatiq actors.app tests.log_write_signals``), it arms itself from
``PFD_TEST_SIGNAL_ON_LINE``: the first line containing that text is interrupted by SIGTERM.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

__all__ = ["signal_inside_log_writes"]


def signal_inside_log_writes(signum: int, should_signal: Callable[[bytes], bool]) -> None:
    """Make every write to descriptor 2 for which ``should_signal(data)`` is true deliver ``signum`` first."""
    real_write = os.write

    def write(fd: int, data: bytes) -> int:  # type: ignore[override]
        if fd == 2 and should_signal(bytes(data)):
            os.kill(os.getpid(), signum)
        return real_write(fd, data)

    os.write = write  # type: ignore[assignment]


def _arm_from_environment() -> None:
    text = os.environ.get("PFD_TEST_SIGNAL_ON_LINE")
    if not text:
        return
    fired: list[bool] = []

    def first_match(data: bytes) -> bool:
        if fired or text.encode() not in data:
            return False
        fired.append(True)
        return True

    signal_inside_log_writes(signal.SIGTERM, first_match)


_arm_from_environment()
