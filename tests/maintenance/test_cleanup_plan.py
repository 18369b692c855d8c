"""What cleanup plans for a shared store's listing: orphans by key and expired runs, by age."""

from __future__ import annotations

from pipeline.maintenance.cleanup import plan_object_cleanup

NOW, HOUR, DAY = 1_000_000_000.0, 3600.0, 86400.0


def test_objects_of_deleted_records_and_expired_runs_are_planned_and_nothing_else():
    listing = [
        ("datasets/ds-1.h5", 10, NOW - DAY),            # its record exists
        ("datasets/ds-gone.h5", 20, NOW - DAY),         # no record
        ("datasets/ds-new.h5", 30, NOW - 60),           # no record yet: being written
        ("datasets/ds-gone_mat/a.mat", 40, NOW - DAY),  # the MAT export of a deleted dataset
        ("experiments/exp-gone/best.pt", 50, NOW - DAY),
        ("experiments/exp-1/best.pt", 60, NOW - DAY),
        ("quality/run-old/report.json", 70, NOW - 31 * DAY),
        ("quality/run-new/report.json", 80, NOW - DAY),
        ("deployments/dep-1/model.onnx", 90, NOW - 365 * DAY),  # not named by a dataset or experiment
    ]
    plan = plan_object_cleanup(listing, known_ids={"datasets": {"ds-1"}, "experiments": {"exp-1"}},
                               expiring=("quality",), min_age_s=6 * HOUR, retention_s=30 * DAY, now=NOW)
    assert [(c.path, c.bytes) for c in plan] == [
        ("datasets/ds-gone.h5", 20), ("datasets/ds-gone_mat/a.mat", 40), ("experiments/exp-gone/best.pt", 50),
        ("quality/run-old/report.json", 70)]
    assert plan[0].reason == "no record 'ds-gone' in datasets" and "30-day retention" in plan[-1].reason
