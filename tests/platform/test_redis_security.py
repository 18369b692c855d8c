"""Redis over TLS with an ACL user: a worker set up right runs its jobs; one that Redis turns
away (a wrong password, a CA that does not sign the server's certificate) stops at once with
one clear error, and a producer's send fails at once instead of waiting out an outage.

Each test owns its redis-server (TLS only, the default user off), on a free port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from redis import AuthenticationError

from actors.platform.broker.connection import redis_client, redis_setup_fault
from actors.store.db import get_database
from actors.store.jobs import JobStore
from tests.servers import ROOT, RedisServer, send_messages, write_tls_certificates
from tests.waiting import wait_until
from tests.workers import Workers

USER, PASSWORD = "pfd-worker", "a-long-password-for-the-acl-user"


@pytest.fixture
def secured(tmp_path) -> Iterator[RedisServer]:  # type: ignore[no-untyped-def]
    tls = write_tls_certificates(tmp_path / "tls")
    server = RedisServer(tmp_path / "redis", appendonly=False, tls=tls, user=(USER, PASSWORD)).start()
    yield server
    server.stop()


def _env(server: RedisServer, *, password: str = PASSWORD, ca: str = "ca") -> dict[str, str]:
    assert server.tls is not None
    return {"PFD_REDIS_URL": server.url(password=password), "PFD_REDIS_CA_FILE": str(server.tls[ca])}


def test_a_worker_runs_jobs_over_tls_as_its_acl_user(app, pg_url, tmp_path, secured):
    env = _env(secured)
    running = Workers(tmp_path, extra_env=env)
    try:
        running.start("cpu_processing", command=running.cpu_command(threads=1))
        key = f"test:{uuid.uuid4().hex}"
        sent = send_messages([{"actor": "durable_work", "kwargs": {"key": key, "seconds": 0}}], env)
        store = JobStore(secured.client(), get_database(pg_url), cache_ttl_s=3600)
        wait_until(lambda: store.get(sent[0]).state == "succeeded", timeout=60, what="the job to run over TLS")
        assert secured.client().hget(f"{key}:done", sent[0]) == b"1"
        # The connection really is TLS as that user: the server lists it so
        clients = secured.client().client_list()
        assert any(c.get("user") == USER for c in clients)
    finally:
        running.stop_all()


@pytest.mark.parametrize(("setup", "reason"), [
    ({"password": "not-the-password"}, "Redis refused the user and password of PFD_REDIS_URL"),
    ({"ca": "other_ca"}, "Redis's TLS certificate is not trusted"),
], ids=["wrong-password", "wrong-ca"])
def test_a_worker_that_redis_turns_away_stops_with_one_clear_error(app, tmp_path, secured, setup, reason):
    env = _env(secured, **setup)
    running = Workers(tmp_path, extra_env=env)
    try:
        # The worker exits by itself (a Redis that is down would be waited for instead)
        refusals, log = running.refused_boot()
        assert len(refusals) == 1 and reason in refusals[0]
        assert "broker.redis_unreachable" not in log and "not-the-password" not in log
    finally:
        running.stop_all()


def test_a_producer_with_a_wrong_password_fails_at_once_not_after_the_outage_wait(app, secured):
    # In the broker's process: the enqueue does not wait out PFD_BROKER_ENQUEUE_WAIT_S (30 s)
    code = ("import actors.app, tests.probe_actors, dramatiq\n"
            "dramatiq.get_broker().get_actor('probe_high_priority').send()\n")
    env = {**_env(secured, password="not-the-password"), "PFD_BROKER_ENQUEUE_WAIT_S": "600",
           "PFD_SEND_CHECKS_RECORDS": "0"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "AuthenticationError" in done.stderr
    assert "broker.enqueue_waiting" not in done.stdout + done.stderr
    # and the fault is told apart from an outage in this process too
    assert secured.tls is not None
    client = redis_client(secured.url(password="not-the-password"), secured.tls["ca"])
    with pytest.raises(AuthenticationError) as refused:
        client.ping()
    assert "user and password" in (redis_setup_fault(refused.value) or "")
