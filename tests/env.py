"""The test environment: its own Redis database index, PostgreSQL database and var folder.

Imported by conftest before anything reads settings, so every process the tests start
(workers included) sees the same ``PFD_*`` variables.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REDIS_URL = os.environ.get("PFD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
PG_ADMIN_URL = os.environ.get("PFD_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# One database per test session, so two runs on one machine never drop each other's.
PG_DATABASE = f"pfd_test_{os.getpid()}"
PG_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_DATABASE
VAR_DIR = Path(tempfile.mkdtemp(prefix="pfd-tests-"))

TEST_ENV = {
    "PFD_REDIS_URL": REDIS_URL,
    "PFD_DATABASE_URL": PG_URL,
    "PFD_VAR_DIR": str(VAR_DIR),
    "PFD_LOG_JSON": "1",
    "PFD_LOG_LEVEL": "INFO",
    "PFD_JOB_FLUSH_INTERVAL_S": "0.2",
    # Jobs here run for seconds, not minutes: record running states sooner than in production.
    "PFD_JOB_RECORD_SETTLE_S": "0.5",
    "PFD_BROKER_HEARTBEAT_TIMEOUT_MS": "5000",
    "PFD_GENERATION_WORKERS": "1",
    "PFD_CPU_PROCESSES": "2",
    # The suite's heavy jobs share the machine with pytest itself: keep every CPU open to them
    # (tests/platform/test_placement.py checks the pinning the defaults give).
    "PFD_URGENT_CPUS": "",
}


def apply() -> None:
    """Put the test variables into this process's environment. With
    ``PFD_TEST_ARTIFACT_STORE=s3`` (``make test-s3``), first start a SeaweedFS for the session
    and point every process's artifact store at it: the whole suite's artifacts then go
    through an object store."""
    if os.environ.get("PFD_TEST_ARTIFACT_STORE") == "s3":
        _use_object_store()
    os.environ.update(TEST_ENV)


def _use_object_store() -> None:
    import atexit

    from tests.servers import SeaweedServer

    server = SeaweedServer(VAR_DIR / "seaweed").start()
    atexit.register(server.stop)
    TEST_ENV.update({"PFD_ARTIFACT_URL": f"s3://{server.bucket}/suite", "PFD_S3_ENDPOINT_URL": server.endpoint,
                     "PFD_S3_ACCESS_KEY_ID": server.access_key, "PFD_S3_SECRET_ACCESS_KEY": server.secret_key})
