"""A worker refuses to start on a database that is not at the newest migration."""

from __future__ import annotations

import subprocess

from tests.workers import Workers


def test_worker_on_an_unmigrated_database_exits_and_names_the_command(app, tmp_path):
    workers = Workers(tmp_path, extra_env={"PFD_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"})
    process = workers.start("high_priority", tag="unmigrated")
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        workers.stop("unmigrated")
        raise AssertionError("the worker kept running on an unmigrated database") from None
    assert code != 0
    log = workers.log("unmigrated")
    assert "is at revision none" in log
    assert "alembic upgrade head" in log
