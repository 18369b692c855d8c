"""Code checks: ruff lint, ruff format check and mypy findings, counted by rule and file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.errors import InvalidInput
from pipeline.quality.checks import parse_mypy_text, run_quality_checks
from pipeline.quality.runner import clean_env, run_command

BAD = 'import os\n\n\ndef half(x: int) -> int:\n    return x / 2\n\n\nvalue = {  "a":1 }\n'
GOOD = 'def double(x: int) -> int:\n    """Twice ``x``."""\n    return 2 * x\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A tiny project with one clean and one faulty module."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "bad.py").write_text(BAD)
    (tmp_path / "pkg" / "good.py").write_text(GOOD)
    return tmp_path


def test_checks_count_findings_by_rule_and_file_with_locations(project, tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("checks")
    report = run_quality_checks(project / "pkg", root=project, timeout_s=120, artifact_dir=artifacts)
    tools = {t.tool: t for t in report.tools}
    assert report.status == "findings"

    ruff = tools["ruff_check"]
    assert (ruff.status, ruff.by_rule, ruff.by_file) == ("findings", {"F401": 1}, {"pkg/bad.py": 1})
    assert (ruff.findings[0].line, ruff.findings[0].column) == (1, 8)

    fmt = tools["ruff_format"]
    assert fmt.status == "findings" and fmt.by_file == {"pkg/bad.py": 1}

    mypy = tools["mypy"]
    assert mypy.by_rule == {"return-value": 1} and mypy.by_file == {"pkg/bad.py": 1}
    finding = mypy.findings[0]
    assert (finding.line, finding.column) == (5, 12) and "float" in finding.message

    summary = report.summary(max_findings=1)
    assert summary["tools"]["ruff_check"]["findings"][0]["code"] == "F401"
    assert (artifacts / "report.json").is_file() and (artifacts / "mypy.log").is_file()


def test_checks_on_clean_code_are_clean(project):
    report = run_quality_checks(project / "pkg" / "good.py", root=project, tools=["ruff_check", "ruff_format"], timeout_s=60)
    assert report.status == "clean"
    assert [t.findings for t in report.tools] == [(), ()]


def test_unknown_tool_is_refused(project):
    with pytest.raises(InvalidInput, match="unknown tools"):
        run_quality_checks(project, root=project, tools=["pylint"])


def test_mypy_text_lines_are_parsed_when_json_is_not_available(tmp_path):
    text = (
        "pkg/bad.py:5:12: error: Incompatible return value type (got \"float\", expected \"int\")  [return-value]\n"
        "pkg/bad.py:7: note: See https://mypy.rtfd.io\n"
        "pkg/other.py:2: error: Name \"y\" is not defined  [name-defined]\n"
    )
    findings = parse_mypy_text(text, tmp_path)
    assert [(f.path, f.line, f.column, f.code) for f in findings] == [
        ("pkg/bad.py", 5, 12, "return-value"), ("pkg/other.py", 2, None, "name-defined"),
    ]
    assert findings[0].message == 'Incompatible return value type (got "float", expected "int")'


def test_runner_caps_the_output_it_keeps(tmp_path):
    env = clean_env(python=sys.executable, tmp_dir=tmp_path)
    result = run_command(
        [sys.executable, "-c", "print('x' * 1_000_000)"], cwd=tmp_path, env=env,
        stdout_path=tmp_path / "out.log", timeout_s=30, max_log_bytes=1_000,
    )
    assert result.returncode == 0
    assert (tmp_path / "out.log").stat().st_size == 1_000
    assert result.dropped_bytes == 1_000_001 - 1_000


def test_runner_passes_arguments_without_a_shell(tmp_path):
    env = clean_env(python=sys.executable, tmp_dir=tmp_path)
    result = run_command(
        [sys.executable, "-c", "import sys; print(sys.argv[1])", "$(touch pwned); echo hi"], cwd=tmp_path, env=env,
        stdout_path=tmp_path / "out.log", timeout_s=30,
    )
    assert result.returncode == 0
    assert (tmp_path / "out.log").read_text().strip() == "$(touch pwned); echo hi"
    assert not (tmp_path / "pwned").exists()


def test_runner_hides_the_workers_settings_from_the_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("PFD_DATABASE_URL", "postgresql://u:secret@db/x")
    env = clean_env(python=sys.executable, tmp_dir=tmp_path)
    assert not any(name.startswith(("PFD_", "PYTEST_", "COV_")) for name in env)
    assert env["TMPDIR"] == str(tmp_path)
