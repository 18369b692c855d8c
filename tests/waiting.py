"""Waiting on a condition with a deadline: the tests' only way to synchronise with other processes."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

__all__ = ["wait_until"]


def wait_until(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.05,  # type: ignore[no-untyped-def]
               what: str = "condition", state: Callable[[], object] | None = None):
    """Poll ``predicate`` until it returns something truthy; fail the test past ``timeout``,
    with what ``state`` then reports (what the wait saw, for a failure that cannot be rerun)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; {state()}" if state is not None else ""
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}{seen}")
        time.sleep(interval)
