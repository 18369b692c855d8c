"""Passing, failing and skipped tests of ``fixture_pkg.calc``."""

import pytest
from fixture_pkg import calc


def test_add_passes():
    assert calc.add(2, 3) == 5


@pytest.mark.parametrize("value", [1, 5, 9])
def test_clamp_keeps_values_inside(value):
    assert calc.clamp(value, 0, 10) == value


def test_subtract_fails():
    assert calc.subtract(5, 3) == 3


def test_clamp_fails_with_a_message():
    assert calc.clamp(15, 0, 10) == 15, "clamp must keep 15"


def test_skipped_on_purpose():
    pytest.skip("skipped on purpose")


@pytest.mark.slow
def test_marked_slow_passes():
    assert calc.add(-1, 1) == 0
