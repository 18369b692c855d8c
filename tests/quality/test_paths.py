"""Paths stay under the quality roots; pytest expressions hold no shell syntax."""

from __future__ import annotations

import re

import pytest

from pipeline.errors import InvalidInput, UnsafePath
from pipeline.quality.paths import check_expression, confine_path
from tests.quality.conftest import FIXTURE, PROJECT_ROOT


def test_path_under_a_root_is_resolved_to_an_absolute_path():
    assert confine_path("tests/quality/fixture_project", [PROJECT_ROOT]) == FIXTURE
    assert confine_path(str(FIXTURE / "tests"), [PROJECT_ROOT]) == FIXTURE / "tests"


def test_path_in_a_second_root_is_allowed(tmp_path):
    (tmp_path / "pkg").mkdir()
    assert confine_path(tmp_path / "pkg", [PROJECT_ROOT, tmp_path]) == (tmp_path / "pkg").resolve()


def test_absolute_path_elsewhere_is_refused():
    with pytest.raises(UnsafePath, match="'/etc' is outside the quality roots"):
        confine_path("/etc", [PROJECT_ROOT])


def test_dotdot_escape_is_refused_even_when_the_target_does_not_exist():
    with pytest.raises(UnsafePath, match=r"escapes the quality roots through '\.\.'"):
        confine_path("tests/../../etc/passwd", [PROJECT_ROOT])
    with pytest.raises(UnsafePath, match=r"through '\.\.'"):
        confine_path("../no-such-thing", [PROJECT_ROOT])


def test_dotdot_that_stays_inside_is_allowed():
    assert confine_path("tests/quality/../quality/fixture_project", [PROJECT_ROOT]) == FIXTURE


def test_symlink_pointing_out_of_the_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to("/etc")
    with pytest.raises(UnsafePath, match="resolves to '/etc', outside the quality roots"):
        confine_path("out", [root])


def test_missing_path_inside_a_root_is_bad_input():
    with pytest.raises(InvalidInput, match="does not exist"):
        confine_path("tests/no_such_dir", [PROJECT_ROOT])


def test_no_roots_allow_nothing():
    with pytest.raises(UnsafePath, match="no quality roots"):
        confine_path("tests", [])


@pytest.mark.parametrize(
    "expression",
    ["not hang", "slow and (fast or not hang)", "test_clamp[5]", "test_x[a-b.c]", "TestCls and test_y"],
)
def test_ordinary_expressions_pass(expression):
    assert check_expression(expression) == expression


@pytest.mark.parametrize(
    ("expression", "bad"),
    [("hang; rm -rf /", ";"), ("$(reboot)", "$"), ("`id`", "`"), ("a | b", "|"), ("a > f", ">"),
     ("'quoted'", "'"), ("a\nb", "\n"), ("a && b", "&")],
)
def test_expressions_with_shell_syntax_are_refused(expression, bad):
    with pytest.raises(InvalidInput, match=re.escape(f"contains {bad!r} at position")):
        check_expression(expression, what="marker expression")


def test_expression_that_looks_like_an_option_is_refused():
    with pytest.raises(InvalidInput, match="must not start with '-'"):
        check_expression("-p evil")


def test_empty_expression_means_none_and_long_ones_are_refused():
    assert check_expression("  ") is None
    with pytest.raises(InvalidInput, match="longer than 200"):
        check_expression("a" * 201)
