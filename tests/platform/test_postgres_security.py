"""PostgreSQL with a password, over TLS with the server's certificate verified
(``sslmode=verify-full``): a worker set up right records its jobs there; one with a wrong
password or a CA that does not sign the server's certificate stops at boot with one clear
error, its password in no log line.

The cluster is the test's own (``initdb`` as the postgres user, TCP only through
``hostssl`` with SCRAM), on a free port; so is the Redis, so the session's workers never
see these messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text

from actors.store.db import get_database, migrate
from actors.store.jobs import JobStore
from actors.store.models import Job
from tests.servers import PostgresCluster, RedisServer, send_messages, write_tls_certificates
from tests.waiting import wait_until
from tests.workers import Workers

PASSWORD = "a-database-password-for-the-test"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[PostgresCluster]:  # type: ignore[no-untyped-def]
    # One cluster for the module: initdb is most of each test's time, and no test changes it.
    tls = write_tls_certificates(tmp_path_factory.mktemp("tls"))
    server = PostgresCluster(tls=tls, user="pfd", password=PASSWORD).start()
    migrate(server.url())
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    yield server
    server.stop()


def test_a_worker_records_its_jobs_over_tls_with_a_password(app, tmp_path, cluster, redis_server):
    env = {"PFD_DATABASE_URL": cluster.url(), "PFD_REDIS_URL": redis_server.url(), "PFD_WORKERS_RECORD_JOBS": "1"}
    running = Workers(tmp_path, extra_env=env)
    database = get_database(cluster.url())
    try:
        running.start("cpu_processing", command=running.cpu_command(threads=1))
        key = f"test:{uuid.uuid4().hex}"
        sent = send_messages([{"actor": "durable_work", "kwargs": {"key": key, "seconds": 0}}], env)
        store = JobStore(redis_server.client(), database, cache_ttl_s=3600)
        wait_until(lambda: store.get(sent[0]).state == "succeeded", timeout=60, what="the job to run")

        def recorded() -> bool:
            with database.session() as session:
                return session.scalar(select(Job.state).where(Job.message_id == sent[0])) == "succeeded"

        wait_until(recorded, timeout=60, what="the job's row in the TLS database")
        with database.session() as session:  # the worker's own connections are encrypted
            encrypted = session.scalar(text(
                "select count(*) from pg_stat_ssl join pg_stat_activity using (pid) "
                "where ssl and usename = 'pfd' and pid <> pg_backend_pid()"))
        assert encrypted >= 1
        assert PASSWORD not in running.log("cpu_processing")
    finally:
        running.stop_all()


@pytest.mark.parametrize(("setup", "reason"), [
    ({"password": "not-the-password"}, 'password authentication failed for user "pfd"'),
    ({"ca": "other_ca"}, "certificate verify failed"),
], ids=["wrong-password", "wrong-ca"])
def test_a_worker_the_database_turns_away_stops_with_one_clear_error(app, tmp_path, cluster, redis_server,
                                                                      setup, reason):
    url = cluster.url(password=setup.get("password"), ca=cluster.tls[setup["ca"]] if "ca" in setup else None)
    running = Workers(tmp_path, extra_env={"PFD_DATABASE_URL": url, "PFD_REDIS_URL": redis_server.url()})
    try:
        refusals, log = running.refused_boot()
        assert len(refusals) == 1 and reason in refusals[0]
        assert PASSWORD not in log and "not-the-password" not in log
    finally:
        running.stop_all()
