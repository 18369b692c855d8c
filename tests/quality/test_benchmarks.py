"""The project's own benchmarks, run in a private copy so the committed figures stay as they are."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidInput
from pipeline.quality.benchmarks import run_benchmarks
from tests.quality.conftest import PROJECT_ROOT


def test_benchmark_returns_the_figures_it_wrote_without_touching_bench_results(tmp_path):
    committed = PROJECT_ROOT / "bench" / "results" / "bench_features.json"
    before = committed.stat().st_mtime_ns if committed.exists() else None
    progress: list[str] = []
    report = run_benchmarks(PROJECT_ROOT, ["features"], quick=True, timeout_s=120, artifact_dir=tmp_path,
                            on_progress=lambda f, s="", **m: progress.append(s))
    assert (report.status, report.exit_code) == ("finished", 0), report.output_tail
    figures = report.figures["bench_features"]
    assert figures["windows"] > 0 and figures["vectorised_windows_per_s"] > 0
    assert "running features" in progress
    assert (tmp_path / "results" / "bench_features.json").is_file()
    assert report.summary()["figures"]["bench_features"]["windows"] == figures["windows"]
    after = committed.stat().st_mtime_ns if committed.exists() else None
    assert before == after


def test_unknown_benchmark_is_refused_with_the_known_ones_named():
    with pytest.raises(InvalidInput, match=r"invalid choice: 'nope' \(choose from .*features"):
        run_benchmarks(PROJECT_ROOT, ["nope"], timeout_s=60)


def test_malformed_benchmark_name_never_starts_a_process():
    with pytest.raises(InvalidInput, match="lowercase identifiers"):
        run_benchmarks(PROJECT_ROOT, ["--quick; rm"], timeout_s=60)
