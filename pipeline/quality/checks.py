"""Code checks on a path: ruff (lint and format check) and mypy, read from their JSON output.

Each tool runs in its own process group under the run's time limit, with the working
directory set to the root the path lies in, so the tools find the project's own
configuration; nothing is written there (ruff's cache is off, mypy's goes nowhere).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInput
from pipeline.progress import ProgressFn, StopFn, never_stop, no_progress
from pipeline.quality.runner import (
    cap_text,
    clean_env,
    keep_files,
    run_command,
    run_dir,
    tail_file,
    write_report,
)

__all__ = ["TOOLS", "ChecksReport", "Finding", "ToolReport", "parse_mypy_text", "run_quality_checks"]

TOOLS = ("ruff_check", "ruff_format", "mypy")
# mypy's standard line: path:line:col: severity: message  [code]
_MYPY_LINE = re.compile(
    r"^(?P<path>[^:\n]+):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<severity>error|note|warning): "
    r"(?P<message>.*?)(?:  \[(?P<code>[a-z0-9-]+)\])?$"
)
_WOULD_REFORMAT = re.compile(r"^Would reformat: (?P<path>.+)$")


@dataclass(frozen=True)
class Finding:
    """One problem a tool reported, with its location (path relative to the run's root)."""

    tool: str
    code: str
    message: str
    path: str
    line: int | None
    column: int | None


@dataclass(frozen=True)
class ToolReport:
    """One tool's outcome. ``status``: clean, findings, timed_out or error."""

    tool: str
    status: str
    exit_code: int | None
    duration_s: float
    findings: tuple[Finding, ...]
    output_tail: str

    @property
    def by_rule(self) -> dict[str, int]:
        """Number of findings per rule code, most frequent first."""
        return dict(Counter(f.code for f in self.findings).most_common())

    @property
    def by_file(self) -> dict[str, int]:
        """Number of findings per file, most frequent first."""
        return dict(Counter(f.path for f in self.findings).most_common())


@dataclass(frozen=True)
class ChecksReport:
    """Every tool's report for one path."""

    path: str
    tools: tuple[ToolReport, ...]

    @property
    def status(self) -> str:
        """clean when every tool is clean; else the worst of error, timed_out, findings."""
        statuses = {tool.status for tool in self.tools}
        return next((s for s in ("error", "timed_out", "findings") if s in statuses), "clean")

    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON-ready data (the artifact's ``report.json``)."""
        return {
            "path": self.path, "status": self.status,
            "tools": {t.tool: {**asdict(t), "by_rule": t.by_rule, "by_file": t.by_file} for t in self.tools},
        }

    def summary(self, *, max_findings: int = 50, max_groups: int = 30, max_output_chars: int = 1_000) -> dict[str, Any]:
        """A compact, size-bounded view for a job result; the full one is ``to_dict()``."""
        tools = {}
        for tool in self.tools:
            tools[tool.tool] = {
                "status": tool.status, "exit_code": tool.exit_code, "count": len(tool.findings),
                "duration_s": round(tool.duration_s, 3),
                "by_rule": dict(list(tool.by_rule.items())[:max_groups]),
                "by_file": {cap_text(k, 300): v for k, v in list(tool.by_file.items())[:max_groups]},
                "findings": [
                    {**asdict(f), "message": cap_text(f.message, 300), "path": cap_text(f.path, 300)}
                    for f in tool.findings[:max_findings]
                ],
                "findings_left_out": max(len(tool.findings) - max_findings, 0),
            }
            if tool.status in ("error", "timed_out"):
                tools[tool.tool]["output_tail"] = tool.output_tail[-max_output_chars:]
        return {"path": self.path, "status": self.status, "tools": tools}


def run_quality_checks(
    path: Path,
    *,
    root: Path,
    tools: Sequence[str] = TOOLS,
    timeout_s: float = 600.0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    python: str = sys.executable,
    artifact_dir: Path | None = None,
    work_base: Path | None = None,
) -> ChecksReport:
    """Run the chosen ``tools`` on ``path`` (confined by the caller) from ``root``.

    ``timeout_s`` bounds the whole run; a tool still running then is killed and reported
    ``timed_out``, and the tools after it are not started. With ``artifact_dir``, each
    tool's full output and ``report.json`` are kept there.

    Raises:
        InvalidInput: an unknown tool name.
        StopRequested: ``should_stop()`` answered true; the running tool's tree was killed.
    """
    unknown = [tool for tool in tools if tool not in TOOLS]
    if unknown or not tools:
        raise InvalidInput(f"unknown tools {unknown}; choose from {list(TOOLS)}")
    deadline = time.monotonic() + timeout_s
    reports: list[ToolReport] = []
    with run_dir(work_base) as work:
        env = clean_env(python=python, tmp_dir=work / "tmp")
        for index, tool in enumerate(tools):
            on_progress(index / len(tools), f"running {tool}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reports.append(ToolReport(tool, "timed_out", None, 0.0, (), "not started: the run's time limit passed"))
                continue
            reports.append(_run_tool(tool, path, root, work, env, python, remaining, should_stop))
        report = ChecksReport(path=_relative(str(path), root), tools=tuple(reports))
        keep_files(work, [f"{tool}.log" for tool in tools] + [f"{tool}.stderr.log" for tool in tools], artifact_dir)
        if artifact_dir is not None:
            write_report(artifact_dir, report.to_dict())
    on_progress(1.0, f"checks {report.status}", **{t.tool: len(t.findings) for t in report.tools})
    return report


def _run_tool(
    tool: str, path: Path, root: Path, work: Path, env: dict[str, str], python: str,
    timeout_s: float, should_stop: StopFn,
) -> ToolReport:
    """Run one tool and parse its machine-readable output."""
    out, err = work / f"{tool}.log", work / f"{tool}.stderr.log"
    argv = _argv(tool, path, python, json_output=True)
    result = run_command(argv, cwd=root, env=env, stdout_path=out, stderr_path=err,
                         timeout_s=timeout_s, should_stop=should_stop)
    if tool == "mypy" and result.returncode == 2 and "unrecognized arguments" in tail_file(err, 2_000):
        # A mypy older than 1.11 has no JSON output: run it again and read its text lines.
        result = run_command(_argv(tool, path, python, json_output=False), cwd=root, env=env,
                             stdout_path=out, stderr_path=err, timeout_s=timeout_s, should_stop=should_stop)
    stdout = out.read_text(encoding="utf-8", errors="replace")
    output_tail = (tail_file(err, 2_000) + "\n" + stdout[-2_000:]).strip()
    if result.timed_out:
        return ToolReport(tool, "timed_out", None, result.duration_s, (), output_tail)
    # Exit codes: 0 clean, 1 findings for every tool here; anything else is the tool failing.
    if result.returncode not in (0, 1):
        return ToolReport(tool, "error", result.returncode, result.duration_s, (), output_tail)
    parse = {"ruff_check": _parse_ruff, "ruff_format": _parse_ruff, "mypy": _parse_mypy}[tool]
    findings = tuple(parse(tool, stdout, root))
    status = "findings" if findings or result.returncode == 1 else "clean"
    return ToolReport(tool, status, result.returncode, result.duration_s, findings, output_tail)


def _argv(tool: str, path: Path, python: str, *, json_output: bool) -> list[str]:
    if tool == "ruff_check":
        return [python, "-m", "ruff", "check", "--no-cache", "--output-format", "json", str(path)]
    if tool == "ruff_format":
        return [python, "-m", "ruff", "format", "--check", "--no-cache", "--output-format", "json", str(path)]
    argv = [python, "-m", "mypy", "--cache-dir", os.devnull, "--no-error-summary", "--no-color-output",
            "--show-column-numbers", "--show-error-codes"]
    return [*argv, "--output", "json", str(path)] if json_output else [*argv, str(path)]


def _parse_ruff(tool: str, stdout: str, root: Path) -> list[Finding]:
    """Read ruff's JSON array; fall back to ``Would reformat:`` lines of an older ruff format."""
    start = stdout.find("[")
    try:
        items = json.loads(stdout[start:]) if start >= 0 else []
    except json.JSONDecodeError:
        items = None
    if items is None:
        return [Finding(tool, "unformatted", "File would be reformatted", _relative(m["path"], root), None, None)
                for m in map(_WOULD_REFORMAT.match, stdout.splitlines()) if m]
    return [
        Finding(
            tool=tool, code=str(item.get("code") or "syntax-error"), message=str(item.get("message", "")),
            path=_relative(str(item.get("filename", "")), root),
            line=(item.get("location") or {}).get("row"), column=(item.get("location") or {}).get("column"),
        )
        for item in items
    ]


def _parse_mypy(tool: str, stdout: str, root: Path) -> list[Finding]:
    """Read mypy's JSON lines, or its standard text lines where a line is not JSON."""
    findings = []
    for line in stdout.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            findings.extend(parse_mypy_text(line, root))
            continue
        if isinstance(item, dict) and item.get("severity") == "error":
            findings.append(Finding(
                tool=tool, code=str(item.get("code") or "error"), message=str(item.get("message", "")),
                path=_relative(str(item.get("file", "")), root), line=item.get("line"),
                # mypy's JSON counts columns from 0, its text (and ruff) from 1.
                column=item["column"] + 1 if isinstance(item.get("column"), int) else None,
            ))
    return findings


def parse_mypy_text(text: str, root: Path) -> list[Finding]:
    """Parse mypy's standard ``path:line:col: error: message  [code]`` lines (errors only)."""
    findings = []
    for line in text.splitlines():
        match = _MYPY_LINE.match(line.rstrip())
        if match and match["severity"] == "error":
            findings.append(Finding(
                tool="mypy", code=match["code"] or "error", message=match["message"],
                path=_relative(match["path"], root), line=int(match["line"]),
                column=int(match["col"]) if match["col"] else None,
            ))
    return findings


def _relative(name: str, root: Path) -> str:
    path = Path(name)
    try:
        return str((path if path.is_absolute() else root / path).resolve().relative_to(root.resolve()))
    except (ValueError, OSError):
        return name
