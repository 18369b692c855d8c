"""The topology across hosts. Network namespaces on a bridge: a services host (Redis over
TLS as an ACL user, a PostgreSQL cluster over TLS with a password, a SeaweedFS object store
over HTTPS with an access key),
a training host, two CPU hosts and a producer host, each worker host with files of its own;
messages are signed. Work sent from the producer runs on a worker host; a worker host cut off
mid-work is replaced by another, to which its messages are redelivered, and every job
completes exactly once. The platform's flow (generate, train, explain, deploy, evaluate, an
HPO campaign whose training host is cut mid-campaign) runs across them, every artifact
written on one host and read on another through the object store.
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
from actors.store.experiments import experiment_history
from actors.store.jobs import JobStore
from tests.hosts import PRIVATE, Host, Network
from tests.servers import (
    PostgresCluster,
    RedisServer,
    SeaweedServer,
    push_raw,
    send_messages,
    write_tls_certificates,
)
from tests.waiting import wait_until
from tests.workers import Workers, message_refusals

REDIS_USER, REDIS_PASSWORD, PG_PASSWORD = "pfd-worker", "a-long-password-for-the-acl-user", "pg-password-for-pfd"
MESSAGE_KEYS = json.dumps(["a-message-signing-key-of-forty-characters!"])


@dataclass
class Topology:
    """The hosts, the services on the services host, and the settings every process gets."""

    services: Host
    training: Host
    cpu: Host
    spare: Host
    producer: Host
    redis: RedisServer
    postgres: PostgresCluster
    seaweed: SeaweedServer
    env: dict[str, str]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    network = Network()
    try:
        services, training, cpu, spare, producer = (
            network.host(name) for name in ("services", "training", "cpu", "spare", "producer"))
        tls = write_tls_certificates(tmp_path_factory.mktemp("tls"), ips=(services.address,))
        redis = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False, tls=tls,
                            user=(REDIS_USER, REDIS_PASSWORD), host=services.address, wrap=services.wrap).start()
        postgres = PostgresCluster(tls=tls, user="pfd", password=PG_PASSWORD, host=services.address,
                                   wrap=services.wrap).start()
        seaweed = SeaweedServer(tmp_path_factory.mktemp("seaweed"), host=services.address, wrap=services.wrap,
                                tls=tls).start()
        try:
            migrate(postgres.url())
            # Each worker host's var/ (artifact root, cache) is its own: artifacts cross through the store.
            env = {"PFD_REDIS_URL": redis.url(), "PFD_REDIS_CA_FILE": str(tls["ca"]),
                   "PFD_DATABASE_URL": postgres.url(), "PFD_MESSAGE_KEYS": MESSAGE_KEYS, "PFD_WORKERS_RECORD_JOBS": "1",
                   "PFD_VAR_DIR": str(PRIVATE / "var"), "TMPDIR": str(PRIVATE / "tmp"),
                   "PFD_ARTIFACT_URL": f"s3://{seaweed.bucket}/platform", "PFD_S3_ENDPOINT_URL": seaweed.endpoint,
                   "PFD_S3_ACCESS_KEY_ID": seaweed.access_key, "PFD_S3_SECRET_ACCESS_KEY": seaweed.secret_key,
                   "PFD_S3_CA_FILE": str(tls["ca"])}
            yield Topology(services, training, cpu, spare, producer, redis, postgres, seaweed, env)
        finally:
            seaweed.stop()
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


def _job_row(database, message_id: str) -> tuple[str, int] | None:  # type: ignore[no-untyped-def]
    """The job's recorded row as (state, deliveries); None while it has none."""
    from actors.store.models import Job

    with database.session() as session:
        row = session.get(Job, message_id)
        return (row.state, row.deliveries) if row else None


def test_the_platform_flow_crosses_hosts_through_the_store_and_survives_losing_its_training_host(
        topology: Topology, tmp_path: Path):
    from actors.store.datasets import get_dataset
    from actors.store.deployments import get_deployment
    from actors.store.experiments import get_experiment
    from actors.store.explanations import get_batch
    from tests.deploy_actors.conftest import QUICK
    from tests.hpo.conftest import hpo_spec, wait_for_campaign
    from tests.records import NOISE_OFF, SEPARABLE
    from tests.training.conftest import TINY_CNN

    # Job rows written by the CPU host's recorder, as in production, not by each worker.
    running = Workers(tmp_path, extra_env={**topology.env, "PFD_WORKERS_RECORD_JOBS": "0"})
    database = get_database(topology.postgres.url())
    jobs = JobStore(topology.redis.client(), database, cache_ttl_s=3600)
    hosts = {"training": topology.training, "cpu": topology.cpu, "spare": topology.spare}

    def logs() -> str:
        return "\n".join(f"{tag}: {running.log(tag)[-1500:]}" for tag in running.processes)

    def run(actor: str, **kwargs: object) -> dict:  # sent from the producer host, waited for to its end
        [message_id] = send_messages([{"actor": actor, "kwargs": kwargs}], topology.env, wrap=topology.producer.wrap)
        job = wait_until(lambda: (j := jobs.get(message_id)) and j.final and j, timeout=180, what=f"{actor} to end")
        assert job.state == "succeeded", (actor, job.error_type, job.error_message, logs())
        return job.result

    def start(host: str, line: str) -> None:
        command = running.cpu_command(threads=2) if line == "cpu_processing" else running.command(line)
        running.start(line, tag=f"{host}-{line}", command=hosts[host].private(command))

    try:
        for host, line in (("training", "gpu_training"), ("training", "high_priority"), ("cpu", "cpu_processing"),
                           ("cpu", "notifications"), ("cpu", "scheduler"), ("cpu", "recorder")):
            start(host, line)
        run("generate_dataset", dataset_id="ds-hosts", fault_types=SEPARABLE, records_per_class=4, noise=NOISE_OFF,
            seed=1)
        run("train_model", experiment_id="exp-hosts", dataset_id="ds-hosts", model_key=TINY_CNN["model_key"],
            model_args=TINY_CNN["model_args"], training=TINY_CNN["training"])
        # Explained on the CPU host (its members), gathered on the training host (the batch's plot).
        batch_id = run("explain_batch", experiment_id="exp-hosts", method="gradcam",
                       signals=[{"dataset_id": "ds-hosts", "split": "test", "record": r} for r in (0, 1)])["batch_id"]
        batch = wait_until(lambda: (b := get_batch(database, batch_id))["status"] != "running" and b, timeout=120,
                           what="the explanation batch")
        deployment_id = run("deploy_experiment", experiment_id="exp-hosts", options=QUICK)["deployment_id"]
        deployment = wait_until(lambda: (d := get_deployment(database, deployment_id))["status"] in ("ready", "failed")
                                and d, timeout=240, what="the deployment")
        roc = run("roc_analysis", experiment_id="exp-hosts", analysis_id="an-hosts")

        # An HPO campaign whose training host is lost while trial 0 trains: the spare takes over.
        campaign_id = "hpo-hosts"
        training = {"epochs": 30, "early_stopping_patience": 100, "batch_size": 4, "scheduler": "none", "seed": 0}
        run("run_hpo_campaign", campaign_id=campaign_id, dataset_id="ds-hosts",
            spec=hpo_spec(n_trials=2, parallelism=1, training=training))
        wait_until(lambda: len(experiment_history(database, f"{campaign_id}-t0")) >= 2, timeout=120,
                   what="trial 0 to train on the training host")
        topology.training.cut()
        for line in ("gpu_training", "high_priority"):
            start("spare", line)
        campaign = wait_for_campaign(database, campaign_id, ("completed", "failed"), timeout=240)
    finally:
        for tag in ("training-gpu_training", "training-high_priority"):  # cut off: no drain to wait for
            if tag in running.processes:
                running.signal(tag, signal.SIGKILL)
        running.stop_all()
        topology.training.restore()

    dataset, experiment = get_dataset(database, "ds-hosts"), get_experiment(database, "exp-hosts")
    var = {name: host.files / "var" / "artifacts" for name, host in hosts.items()}
    # Written on one host, read on the other: the CPU host never had the checkpoint it explained,
    # deployed and evaluated, nor the training host the dataset it trained on, but through the store.
    assert (var["cpu"] / dataset["path"]).is_file() and not (var["training"] / dataset["path"]).exists()
    assert (var["training"] / experiment["model_path"]).is_file()
    assert not (var["cpu"] / experiment["model_path"]).exists() and not (var["cpu"] / experiment["predictions_path"]).exists()
    assert batch["status"] == "completed" and batch["done"] == 2, batch
    assert (var["training"] / batch["plot_path"]).is_file()  # drawn there from the CPU host's attributions
    assert not (var["training"] / batch["links"][0]["npz_path"]).exists()
    assert deployment["status"] == "ready", (deployment["error"], logs())
    assert roc["status"] == "completed"
    # The campaign completed with each trial recorded once; trial 0 ran twice, the second time on the spare.
    assert campaign["status"] == "completed" and campaign["counts"] == {"complete": 2}, campaign
    first = jobs.get(campaign["trials"]["0"]["message_id"])
    assert first.state == "succeeded" and first.deliveries == 2, (first.state, first.deliveries)
    assert (var["spare"] / "experiments" / f"{campaign_id}-t1").is_dir()
    # The recorder on the CPU host wrote every job's row, the lost host's trial included.
    trial_job = campaign["trials"]["0"]["message_id"]
    wait_until(lambda: _job_row(database, trial_job) == ("succeeded", 2), timeout=30,
               what=f"the recorder to write the redelivered trial's row (now {_job_row(database, trial_job)})")


def test_forged_messages_and_wrong_credentials_are_refused_on_a_worker_host(topology: Topology, tmp_path: Path):
    from dramatiq.encoder import JSONEncoder
    from dramatiq.message import Message

    from actors.platform.broker.signing import SigningEncoder

    running = Workers(tmp_path, extra_env=topology.env)
    client = topology.redis.client()
    key = f"test:{uuid.uuid4().hex}"
    message = Message(queue_name="cpu_processing", actor_name="durable_work", args=(),
                      kwargs={"key": key, "seconds": 0}, options={})
    try:
        running.start("cpu_processing", tag="cpu", command=topology.cpu.private(running.cpu_command(threads=1)))
        # Bodies written straight into Redis from outside, past every producer: unsigned, and
        # signed but altered on the way.
        genuine = SigningEncoder([json.loads(MESSAGE_KEYS)[0].encode()]).encode(message.asdict())
        forged = {push_raw(client, "cpu_processing", JSONEncoder().encode(message.asdict())): "unsigned",
                  push_raw(client, "cpu_processing", genuine.replace(b'"seconds":0', b'"seconds":1')): "altered"}
        reasons = wait_until(lambda: (found := message_refusals(running.log("cpu"))).keys() >= forged.keys() and found,
                             timeout=60, what="the CPU host to refuse the forged bodies")
        assert all(why in reasons[redis_id] and "refused unread" in reasons[redis_id] for redis_id, why in forged.items())
        dead = {r.decode() for r in client.zrange("dramatiq:cpu_processing.XQ", 0, -1)}
        assert set(forged) <= dead and not client.hkeys(f"{key}:starts")  # dead-lettered, never run
    finally:
        running.stop_all()
    # A host given the wrong CA, or the wrong password, stops at once with one clear error.
    other_ca = write_tls_certificates(tmp_path / "other-tls", ips=(topology.services.address,))["ca"]
    for name, setup, reason in (
            ("wrong-ca", {"PFD_REDIS_CA_FILE": str(other_ca)}, "Redis's TLS certificate is not trusted"),
            ("wrong-password", {"PFD_REDIS_URL": topology.redis.url(password="not-the-password")},
             "Redis refused the user and password of PFD_REDIS_URL")):
        refused = Workers(tmp_path / name, extra_env={**topology.env, **setup})
        refused.log_dir.mkdir()
        try:
            refusals, log = refused.refused_boot(on=topology.spare.private)
        finally:
            refused.stop_all()
        assert len(refusals) == 1 and reason in refusals[0], log[-2000:]
        assert "broker.redis_unreachable" not in log and "not-the-password" not in log
