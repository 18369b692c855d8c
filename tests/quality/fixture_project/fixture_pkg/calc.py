"""Arithmetic helpers, deliberately not all covered by the fixture's tests."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    """Return the sum."""
    return a + b


def subtract(a: int, b: int) -> int:
    """Return the difference."""
    return a - b


def clamp(value: int, low: int, high: int) -> int:
    """Return ``value`` kept within ``[low, high]``."""
    if value < low:
        return low
    if value > high:
        return high
    return value


def never_called(values: list[int]) -> int:
    """Not exercised by any test, so coverage stays below 100%."""
    total = 0
    for value in values:
        total += value
    return total
