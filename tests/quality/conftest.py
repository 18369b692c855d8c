"""Quality tests: the fixture project is run by the tests, never collected by this session."""

from __future__ import annotations

from pathlib import Path

# Its tests fail, error and hang on purpose: only the quality runs under test may run them.
collect_ignore = ["fixture_project"]

FIXTURE = Path(__file__).resolve().parent / "fixture_project"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
