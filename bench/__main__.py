"""``make bench``: run the benchmarks, write ``bench/results/*.json``, print a table, redraw
the charts in ``bench/charts``.

``python -m bench [--quick] [--only NAME ...]``; ``--quick`` runs small sizes to check the
benchmarks themselves, not to report figures. The fan-out, training and deployment
benchmarks take long and run on their own (``python -m bench.bench_<name>``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import RESULTS_DIR


def _generation(quick: bool) -> dict:
    from bench import bench_generation

    return bench_generation.run(records_per_class=5 if quick else 320)


def _tracking(quick: bool) -> dict:
    from bench import bench_tracking

    return bench_tracking.run(n=2_000 if quick else 20_000)


def _features(quick: bool) -> dict:
    from bench import bench_features

    return bench_features.run(RESULTS_DIR, records_per_class=1 if quick else 2)


def _dispatch(quick: bool) -> dict:
    from bench import bench_dispatch

    return bench_dispatch.run(n=2_000 if quick else 20_000, rounds=1 if quick else 3)


def _latency(quick: bool) -> dict:
    from bench import bench_latency

    if quick:
        return bench_latency.run(n=200, rounds=1, quiet=3, placements=("none", "idle"), burn_s=30)
    return bench_latency.run()


def _memory(quick: bool) -> dict:
    from bench import bench_memory

    return bench_memory.run(jobs_per_kind=200 if quick else 1000)


def _scaling(quick: bool) -> dict:
    from bench import bench_scaling

    return bench_scaling.run(quick=quick)


def _listings(quick: bool) -> dict:
    from bench import bench_listings

    return bench_listings.run(rows=2_000 if quick else 100_000, repeats=3 if quick else 20)


def _signing(quick: bool) -> dict:
    from bench import bench_signing

    return bench_signing.run(n=2_000 if quick else 10_000, rounds=1 if quick else 3)


def _redelivery(quick: bool) -> dict:
    from bench import bench_redelivery

    return bench_redelivery.run(kills=2 if quick else 5)


def _artifacts(quick: bool) -> dict:
    from bench import bench_artifacts

    return bench_artifacts.run(quick=quick)


BENCHMARKS = {"artifacts": _artifacts, "listings": _listings, "generation": _generation, "tracking": _tracking,
              "features": _features, "dispatch": _dispatch, "latency": _latency, "memory": _memory, "scaling": _scaling,
              "redelivery": _redelivery, "signing": _signing}


def main() -> None:
    """Run the chosen benchmarks and print their figures."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=sorted(BENCHMARKS))
    args = parser.parse_args()
    console = Console()
    table = Table("benchmark", "figure", "value")
    for name in args.only:
        console.print(f"[bold]running {name}...")
        for key, value in BENCHMARKS[name](args.quick).items():
            if not isinstance(value, (dict, list)):
                table.add_row(name, key, str(value))
    console.print(table)
    console.print(f"figures written to {Path(RESULTS_DIR)}")
    from bench.charts import draw_all

    for chart in draw_all():
        console.print(f"chart: {chart}")


if __name__ == "__main__":
    main()
