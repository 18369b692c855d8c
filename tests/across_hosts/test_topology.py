"""The topology across hosts. Five network namespaces on a bridge: a services host (Redis
over TLS as an ACL user, a PostgreSQL cluster over TLS with a password), two CPU hosts and a
producer host, each worker host with files of its own; messages are signed. Work sent from
the producer runs on a worker host; a worker host cut off mid-work is replaced by another,
to which its messages are redelivered, and every job completes exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.store.db import get_database, migrate
from actors.store.jobs import JobStore
from tests.conftest import wait_until
from tests.hosts import PRIVATE, Host, Network
from tests.servers import PostgresCluster, RedisServer, send_messages, write_tls_certificates
from tests.workers import Workers

REDIS_USER, REDIS_PASSWORD, PG_PASSWORD = "pfd-worker", "a-long-password-for-the-acl-user", "pg-password-for-pfd"
MESSAGE_KEYS = json.dumps(["a-message-signing-key-of-forty-characters!"])


@dataclass
class Topology:
    """The hosts, the services on the services host, and the settings every process gets."""

    services: Host
    cpu: Host
    spare: Host
    producer: Host
    redis: RedisServer
    postgres: PostgresCluster
    env: dict[str, str]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    network = Network()
    try:
        services, cpu, spare, producer = (network.host(name) for name in ("services", "cpu", "spare", "producer"))
        tls = write_tls_certificates(tmp_path_factory.mktemp("tls"), ips=(services.address,))
        redis = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False, tls=tls,
                            user=(REDIS_USER, REDIS_PASSWORD), host=services.address, wrap=services.wrap).start()
        postgres = PostgresCluster(tls=tls, user="pfd", password=PG_PASSWORD, host=services.address,
                                   wrap=services.wrap).start()
        try:
            migrate(postgres.url())
            env = {"PFD_REDIS_URL": redis.url(), "PFD_REDIS_CA_FILE": str(tls["ca"]),
                   "PFD_DATABASE_URL": postgres.url(), "PFD_MESSAGE_KEYS": MESSAGE_KEYS, "PFD_WORKERS_RECORD_JOBS": "1",
                   "PFD_VAR_DIR": str(PRIVATE / "var"), "TMPDIR": str(PRIVATE / "tmp")}
            yield Topology(services, cpu, spare, producer, redis, postgres, env)
        finally:
            postgres.stop()
            redis.stop()
    finally:
        network.remove()


def test_each_worker_host_sees_its_own_files_and_no_other_hosts(topology: Topology):
    write = subprocess.run(topology.cpu.private(f"echo mine > {PRIVATE}/var/only-here"), shell=True, timeout=30)
    look = subprocess.run(topology.spare.private(f"test -e {PRIVATE}/var/only-here"), shell=True, timeout=30)
    assert write.returncode == 0 and look.returncode == 1
    assert (topology.cpu.files / "var" / "only-here").read_text() == "mine\n"
    assert not (topology.spare.files / "var" / "only-here").exists() and not (PRIVATE / "var" / "only-here").exists()


def test_a_host_cut_off_mid_work_is_replaced_and_every_job_completes_once(topology: Topology, tmp_path: Path):
    running = Workers(tmp_path, extra_env=topology.env)
    redis = topology.redis.client()
    store = JobStore(redis, get_database(topology.postgres.url()), cache_ttl_s=3600)
    key = f"test:{uuid.uuid4().hex}"
    sent: list[str] = []

    def state() -> str:  # what a failure shows: every job, the counts, both hosts' last lines
        jobs = {m: (store.get(m).state, store.get(m).deliveries) for m in sent}
        tails = {tag: running.log(tag)[-1500:] for tag in ("cpu", "spare")}
        return f"jobs {jobs}, starts {redis.hgetall(f'{key}:starts')}, done {redis.hgetall(f'{key}:done')}, {tails}"

    try:
        running.start("cpu_processing", tag="cpu", command=topology.cpu.private(running.cpu_command(threads=2)))
        sent += send_messages([{"actor": "durable_work", "kwargs": {"key": key, "seconds": 6}}] * 4, topology.env,
                             wrap=topology.producer.wrap)
        # Two jobs running on the CPU host, as its records in Redis say (flushed every 0.2 s),
        wait_until(lambda: [store.get(m).state for m in sent].count("running") == 2, timeout=90,
                   what="the CPU host to run two jobs")
        ran_there = {m for m in sent if store.get(m).state == "running"}
        topology.cpu.cut()  # the host, its two running jobs and its prefetched ones, lost to the others
        running.start("cpu_processing", tag="spare", command=topology.spare.private(running.cpu_command(threads=2)))

        def done() -> dict[bytes, bytes] | None:  # the work, and the records the worker flushes after it
            counts = redis.hgetall(f"{key}:done")
            final = all(store.get(m).final for m in sent)
            return counts if len(counts) == len(sent) and final else None

        try:
            counts = wait_until(done, timeout=150, what="every job to complete on the spare host")
        except pytest.fail.Exception:
            pytest.fail(f"not every job completed: {state()}")
        assert set(counts.values()) == {b"1"}, state()  # each once: the cut host's finish never reached Redis
        starts = {m.decode(): int(n) for m, n in redis.hgetall(f"{key}:starts").items()}
        assert {m: starts[m] for m in sent} == {m: 2 if m in ran_there else 1 for m in sent}, state()
        jobs = {m: store.get(m) for m in sent}
        assert all(job.state == "succeeded" for job in jobs.values()), state()
        # Counted as redelivered (signed bodies too): the two it ran, and any it had prefetched.
        assert all(jobs[m].deliveries == 2 for m in ran_there), state()
        assert all(j.deliveries in (1, 2) for j in jobs.values()), state()
    finally:
        running.signal("cpu", signal.SIGKILL)  # cut off, it could not drain: no grace to wait out
        running.stop_all()
        topology.cpu.restore()
