"""The reliability report: figures the fault tests measure, written where the run asks.

``PFD_RELIABILITY_REPORT=bench/results/reliability.json`` (``make reliability``) makes the
session write what each fault test recorded; a plain ``make test`` writes nothing.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class Report:
    """Measured outcomes of fault tests, by fault."""

    def __init__(self) -> None:
        self.faults: dict[str, dict[str, Any]] = {}

    def record(self, name: str, **figures: Any) -> None:
        """Keep what one fault test measured."""
        self.faults[name] = figures


@pytest.fixture(scope="session")
def reliability() -> Iterator[Report]:
    """The session's report; written to ``$PFD_RELIABILITY_REPORT`` at the end, if set."""
    report = Report()
    yield report
    target = os.environ.get("PFD_RELIABILITY_REPORT")
    if target and report.faults:
        path = Path(target)
        existing = json.loads(path.read_text()) if path.exists() else {}
        faults = {**existing.get("faults", {}), **report.faults}
        path.write_text(json.dumps({
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "faults": faults,
        }, indent=2) + "\n")
