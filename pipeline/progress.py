"""The progress and stop contract every long ``pipeline`` function follows."""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.errors import StopRequested

__all__ = ["ProgressFn", "StopFn", "check_stop", "never_stop", "no_progress", "never_back", "scaled"]


class ProgressFn(Protocol):
    """Receives progress as a fraction in [0, 1], a short status text and metrics."""

    def __call__(self, fraction: float, status: str = "", **metrics: Any) -> None: ...


class StopFn(Protocol):
    """Answers true when long work should stop at its next safe point."""

    def __call__(self) -> bool: ...


def no_progress(fraction: float, status: str = "", **metrics: Any) -> None:
    """Discard progress (the default for direct calls)."""


def never_stop() -> bool:
    """Never ask to stop (the default for direct calls)."""
    return False


def check_stop(should_stop: StopFn) -> None:
    """Raise ``StopRequested`` when ``should_stop()`` answers true."""
    if should_stop():
        raise StopRequested("stop requested")


def never_back(on_progress: ProgressFn) -> ProgressFn:
    """Report no fraction below one already reported (work that starts a pass over again
    holds its bar where it was, with the new status, until the new pass gets past it)."""
    peak = 0.0

    def report(fraction: float, status: str = "", **metrics: Any) -> None:
        nonlocal peak
        peak = max(peak, fraction)
        on_progress(peak, status, **metrics)

    return report


def scaled(on_progress: ProgressFn, start: float, end: float) -> ProgressFn:
    """Map a sub-task's 0..1 progress onto ``[start, end]`` of its parent's."""

    def report(fraction: float, status: str = "", **metrics: Any) -> None:
        on_progress(start + (end - start) * min(max(fraction, 0.0), 1.0), status, **metrics)

    return report
