"""Training tests: a Redis lane of their own, tiny generated datasets, real gpu_training workers.

The platform suite keeps a gpu_training worker running for the rest of the session. These
tests must know which worker takes their messages (the resume test kills it), so their
workers and messages use another Redis database: the "lane". Job, dataset and experiment
records still go to the one test PostgreSQL database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from redis import Redis

from actors.platform.errors import JobNotFound
from actors.store.db import Database
from actors.store.jobs import JobStore, JobView
from tests import env
from tests.probe_actors import PROBES
from tests.records import make_dataset
from tests.waiting import wait_until
from tests.workers import Workers

_MAIN_DB = int(env.REDIS_URL.rsplit("/", 1)[1] or 0)
# The next database index after the suite's own, unless told otherwise.
LANE_REDIS_URL = os.environ.get(
    "PFD_TEST_TRAINING_REDIS_URL", f"{env.REDIS_URL.rsplit('/', 1)[0]}/{(_MAIN_DB + 1) % 16}")
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
def lane(app, database: Database):  # type: ignore[no-untyped-def]
    """The training tests' Redis lane, emptied at the start of the session."""
    client = Redis.from_url(LANE_REDIS_URL)
    client.flushdb()
    yield Lane(client, database)
    client.close()


@pytest.fixture(scope="session")
def tiny_dataset(database: Database) -> dict:
    """Four records of each of three separable classes (split 2/1/1 per class)."""
    return make_dataset(database, "ds-train-tiny")
