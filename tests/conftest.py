"""Shared fixtures: real Redis (own db index), real PostgreSQL (own database), workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import env
from tests.waiting import wait_until

env.apply()  # PFD_TEST_ARTIFACT_STORE=s3 (make test-s3): artifacts through a SeaweedFS of the session's

import psycopg
import redis

# The broker must exist before any actor module (ours or the probes) is imported.
import actors.app
import tests.probe_actors  # noqa: F401
from actors.store.db import Database, get_database, migrate


def _pg_conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def recreate_pg_database(name: str) -> str:
    """Drop and create a PostgreSQL database for tests; return its SQLAlchemy URL."""
    drop_pg_database(name)
    with psycopg.connect(_pg_conninfo(env.PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return env.PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(name: str) -> None:
    """Drop a test database, closing whatever still holds it."""
    with psycopg.connect(_pg_conninfo(env.PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    """The test Redis database, emptied at the start of the session."""
    client = redis.Redis.from_url(env.REDIS_URL)
    client.flushdb()
    yield client


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The test PostgreSQL database of this session, migrated to head, dropped at the end."""
    url = recreate_pg_database(env.PG_DATABASE)
    migrate(url)
    yield url
    get_database(url).dispose()
    drop_pg_database(env.PG_DATABASE)


@pytest.fixture(scope="session")
def database(pg_url: str) -> Database:
    """The test PostgreSQL database (migrated to head)."""
    return get_database(pg_url)


@pytest.fixture(scope="session")
def app(redis_client, pg_url):  # type: ignore[no-untyped-def]
    """The producer side: the broker set up from settings, with every actor loaded."""
    return actors.app


WORKER_LINES = ("high_priority", "gpu_training", "cpu_processing", "notifications", "recorder")


@pytest.fixture(scope="session")
def workers(app, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The four queue workers, each started exactly as its Procfile line says."""
    from actors.platform.jobs import get_job
    from tests.probe_actors import PROBES
    from tests.workers import Workers

    running = Workers(tmp_path_factory.mktemp("worker-logs"))
    for name in WORKER_LINES:
        running.start(name)
    try:
        # Ready when each queue has answered a probe.
        for queue, probe in PROBES.items():
            message = probe.send()
            wait_until(lambda m=message: get_job(m.message_id).state == "succeeded", timeout=90, what=f"{queue} worker")
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A real MLflow tracking server on loopback (SQLite store, local artifacts), for the session."""
    from tests.mlflow_server import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_client(mlflow_server):  # type: ignore[no-untyped-def]
    """An MLflow client of the test server, to read back what workers logged."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
