"""Run the project's own benchmarks (``python -m bench --only NAME ...``); return their figures.

``bench`` writes its JSON next to its own code (``bench/results/``), so a run inside the
repository would overwrite the committed figures, and two runs at once each other's. The
``bench`` package is therefore copied into the run's own folder and run from there (first
on ``PYTHONPATH``, the project root after it for ``pipeline`` and ``actors``): the same code,
with its results in a private ``bench/results/`` that is read back once it exits.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidInput
from pipeline.progress import ProgressFn, StopFn, never_stop, no_progress
from pipeline.quality.runner import (
    LineTail,
    clean_env,
    keep_files,
    run_command,
    run_dir,
    write_report,
)

__all__ = ["BenchmarkReport", "run_benchmarks"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_RUNNING = re.compile(r"running (?P<name>[a-z0-9_]+)\.\.\.")


@dataclass(frozen=True)
class BenchmarkReport:
    """What a benchmark run wrote. ``status``: finished, failed or timed_out."""

    status: str
    names: tuple[str, ...]
    quick: bool
    exit_code: int | None
    duration_s: float
    figures: dict[str, dict[str, Any]]
    output_tail: str

    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON-ready data (the artifact's ``report.json``)."""
        return asdict(self)

    def summary(self, *, max_output_chars: int = 1_000) -> dict[str, Any]:
        """A compact view for a job result: scalar figures only (as ``make bench`` prints them)."""
        return {
            "status": self.status, "names": list(self.names), "quick": self.quick,
            "exit_code": self.exit_code, "duration_s": round(self.duration_s, 3),
            "figures": {
                result: {k: v for k, v in figures.items() if not isinstance(v, (dict, list))}
                for result, figures in self.figures.items()
            },
            "output_tail": self.output_tail[-max_output_chars:] if self.status != "finished" else "",
        }


def run_benchmarks(
    project_root: Path,
    names: Sequence[str],
    *,
    quick: bool = False,
    timeout_s: float = 1_800.0,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    python: str = sys.executable,
    artifact_dir: Path | None = None,
    work_base: Path | None = None,
) -> BenchmarkReport:
    """Run the benchmarks ``names`` of the ``bench`` package under ``project_root``.

    ``quick`` runs the small sizes (to check the benchmarks, not to report figures).
    Returns the figures of every JSON file the run wrote, by file name without ``.json``.

    Raises:
        InvalidInput: no ``bench`` package, a malformed name, or a name ``bench`` does not know.
        StopRequested: ``should_stop()`` answered true; the process tree was killed.
    """
    bench = project_root / "bench"
    if not (bench / "__main__.py").is_file():
        raise InvalidInput(f"{project_root} has no benchmark entry point bench/__main__.py")
    if not names:
        raise InvalidInput("choose at least one benchmark")
    bad = [name for name in names if not _NAME.fullmatch(name)]
    if bad:
        raise InvalidInput(f"benchmark names must be lowercase identifiers; refused: {bad}")
    names = tuple(dict.fromkeys(names))
    with run_dir(work_base) as work:
        shutil.copytree(bench, work / "bench", ignore=shutil.ignore_patterns("results", "out", "__pycache__"))
        argv = [python, "-m", "bench", *(["--quick"] if quick else []), "--only", *names]
        env = clean_env(python=python, tmp_dir=work / "tmp", extra={
            "PYTHONPATH": f"{work}:{project_root}", "COLUMNS": "120",
        })
        tail = LineTail(work / "output.log")
        seen: list[str] = []

        def follow() -> None:
            for line in tail.read():
                match = _RUNNING.search(line)
                if match and match["name"] not in seen:
                    seen.append(match["name"])
                    on_progress((len(seen) - 1) / len(names), f"running {match['name']}", benchmark=match["name"])

        on_progress(0.0, "starting benchmarks")
        result = run_command(argv, cwd=work, env=env, stdout_path=work / "output.log",
                             timeout_s=timeout_s, should_stop=should_stop, on_poll=follow)
        output_tail = result.output(4_000)
        if result.returncode == 2 and "invalid choice" in output_tail:
            raise InvalidInput(f"unknown benchmark: {output_tail.strip().splitlines()[-1]}")
        results = work / "bench" / "results"
        figures = {}
        for path in sorted(results.glob("*.json")) if results.is_dir() else []:
            try:
                figures[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                # A benchmark killed mid-write leaves a partial file: report it as such.
                figures[path.stem] = {"unreadable": True}
        status = "timed_out" if result.timed_out else ("finished" if result.returncode == 0 else "failed")
        report = BenchmarkReport(status, names, quick, result.returncode, result.duration_s, figures, output_tail)
        keep_files(work, ["output.log"], artifact_dir)
        if artifact_dir is not None:
            keep_files(results, [f"{stem}.json" for stem in figures], artifact_dir / "results")
            write_report(artifact_dir, report.to_dict())
    on_progress(1.0, f"benchmarks {status}", results=len(figures))
    return report
