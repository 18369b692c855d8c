"""A test whose fixture fails: reported as an error, not a failure."""

import pytest


@pytest.fixture
def broken():
    raise RuntimeError("fixture could not start")


def test_with_broken_fixture(broken):
    assert broken
