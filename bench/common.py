"""What every benchmark shares: where results go, and how they are written and shown."""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_DIR", "machine", "page_cache", "scratch_dir", "write_result"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Describe the machine a figure was measured on."""
    return {"cpus": os.cpu_count(), "cpu": _cpu(), "platform": platform.platform(), "python": platform.python_version()}


def _cpu() -> dict[str, Any]:
    """The CPU's model and the units that bf16 and int8 speed depend on (Linux; empty elsewhere)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    units = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8"}
    return {"model": fields.get("model name", ""), "units": sorted(units & set(fields.get("flags", "").split()))}


def page_cache(paths: list[Path], *, cold: bool) -> None:
    """Write dirty pages back, then drop the page cache (``cold``, root only) or read ``paths``
    into it: this machine's kernel reclaims idle page cache on its own (DAMON), so "warm"
    means nothing unless the files were read just before."""
    os.sync()
    if cold:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass


def scratch_dir(prefix: str) -> Path:
    """A fresh folder in the system temp folder for one benchmark's files (its var folder, databases,
    worker logs), removed when this process exits: a run leaves nothing behind but its results."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Write ``figures`` with the machine and time to ``bench/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": machine(), **figures}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
