"""Training tests: a Redis lane of their own, tiny generated datasets, real gpu_training workers.

The platform suite keeps a gpu_training worker running for the rest of the session. These
tests must know which worker takes their messages (the resume test kills it), so their
workers and messages use another Redis database: the "lane". Job, dataset and experiment
records still go to the one test PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from redis import Redis

from actors.errors import JobNotFound
from actors.store.datasets import claim_dataset, complete_dataset
from actors.store.db import Database, get_database
from actors.store.jobs import JobStore, JobView
from config.settings import get_settings
from pipeline.artifacts import file_sha256
from tests import env
from tests.conftest import wait_until
from tests.probe_actors import PROBES
from tests.workers import Workers

_MAIN_DB = int(env.REDIS_URL.rsplit("/", 1)[1] or 0)
# The next database index after the suite's own, unless told otherwise.
LANE_REDIS_URL = os.environ.get(
    "PFD_TEST_TRAINING_REDIS_URL", f"{env.REDIS_URL.rsplit('/', 1)[0]}/{(_MAIN_DB + 1) % 16}")
NOISE_OFF = {layer: False for layer in (
    "measurement", "emi", "pink", "drift", "quantization", "sensor_drift", "aliasing", "impulses")}
# Three classes that clean signals tell apart at a glance; chance is 1/3.
SEPARABLE = ["sain", "desequilibre", "oilwhirl"]
TINY_CNN = {
    "model_key": "cnn1d",
    "model_args": {"width": 8, "depth": 2},
    "training": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0},
}


class Lane:
    """Send to, read from and run workers on the training tests' own Redis database."""

    def __init__(self, client: Redis, database: Database) -> None:
        self.redis = client
        self.broker = RedisBroker(client=client)  # only enqueues; never the global broker
        self.store = JobStore(client, database, cache_ttl_s=3600)

    def send(self, actor: dramatiq.Actor, *, options: dict[str, Any] | None = None, **kwargs: Any) -> dramatiq.Message:
        """Validate and enqueue a message on the lane, recording it queued as a producer does."""
        message = actor.message_with_options(kwargs=kwargs, **(options or {}))
        self.store.enqueued(message.message_id, message.actor_name, message.queue_name)
        self.broker.enqueue(message)
        return message

    def job(self, message_id: str) -> JobView | None:
        """The job's record, or None before it exists."""
        try:
            return self.store.get(message_id)
        except JobNotFound:
            return None

    def wait(self, message_id: str, timeout: float = 90.0) -> JobView:
        """Wait for the job to reach a final state and return it."""
        return wait_until(
            lambda: (view := self.job(message_id)) is not None and view.final and view,
            timeout=timeout, interval=0.1, what=f"job {message_id} to finish",
        )

    def notifications(self, event: str, experiment_id: str) -> list[dict[str, Any]]:
        """``notify`` messages waiting on the lane (no notifications worker runs here)."""
        found = []
        for raw in self.redis.hvals("dramatiq:notifications.msgs"):
            kwargs = json.loads(raw)["kwargs"]
            if kwargs["event"] == event and kwargs["payload"].get("experiment_id") == experiment_id:
                found.append(kwargs["payload"])
        return found

    def workers(self, log_dir: Path) -> Workers:
        """A set of Procfile workers bound to the lane, loading the training test set-up."""
        return Workers(
            log_dir, extra_modules=("tests.probe_actors", "tests.training.worker_setup"),
            extra_env={"PFD_REDIS_URL": LANE_REDIS_URL},
        )

    def start_gpu_worker(self, workers: Workers, tag: str, *, epoch_delay_s: float = 0.0, ready: bool = True) -> None:
        """Start the Procfile's gpu_training line; with ``ready``, wait until it answers a probe."""
        command = workers.command("gpu_training")
        if epoch_delay_s:
            command = f"PFD_TEST_EPOCH_DELAY_S={epoch_delay_s:g} {command}"
        workers.start("gpu_training", tag=tag, command=command)
        if ready:
            probe = self.send(PROBES["gpu_training"])
            assert self.wait(probe.message_id, timeout=90).state == "succeeded", workers.log(tag)


@pytest.fixture(scope="session")
def database(pg_url: str) -> Database:
    """The test PostgreSQL database (migrated to head)."""
    return get_database(pg_url)


@pytest.fixture(scope="session")
def lane(app, database: Database):  # type: ignore[no-untyped-def]
    """The training tests' Redis lane, emptied at the start of the session."""
    client = Redis.from_url(LANE_REDIS_URL)
    client.flushdb()
    yield Lane(client, database)
    client.close()


def record_dataset(database: Database, dataset_id: str, path: Path, *, status: str = "completed", **fields: Any) -> dict:
    """Record a dataset row for ``path`` (its checksum taken now unless given)."""
    claim_dataset(database, dataset_id, "test-setup", source="generator", name=dataset_id)
    if status != "completed":
        return {"dataset_id": dataset_id}
    fields.setdefault("checksum", file_sha256(path))
    return complete_dataset(database, dataset_id, "test-setup", path=str(path), **fields)


def make_dataset(database: Database, dataset_id: str, *, fault_types: list[str], records_per_class: int, seed: int = 1) -> dict:
    """Generate a noise-free dataset in the artifact root and record it completed."""
    from pipeline.datasets.generate import generate_dataset
    from pipeline.signals.config import GeneratorConfig

    config = GeneratorConfig.from_dict(
        {"fault_types": fault_types, "records_per_class": records_per_class, "noise": NOISE_OFF, "seed": seed})
    produced = generate_dataset(config, get_settings().artifact_root / "datasets", dataset_id, workers=1)
    return record_dataset(
        database, dataset_id, Path(produced.hdf5_path), n_records=produced.n_records,
        class_counts=produced.class_counts, split_counts=produced.split_counts, config_hash=produced.config_hash,
    )


def copy_dataset_file(source: dict, dataset_id: str) -> Path:
    """Copy a dataset's file under a new name in the artifact root."""
    target = get_settings().artifact_root / "datasets" / f"{dataset_id}.h5"
    shutil.copyfile(source["path"], target)
    return target


@pytest.fixture(scope="session")
def tiny_dataset(database: Database) -> dict:
    """Four records of each of three separable classes (split 2/1/1 per class)."""
    return make_dataset(database, "ds-train-tiny", fault_types=SEPARABLE, records_per_class=4)
