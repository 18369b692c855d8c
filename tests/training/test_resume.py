"""Training jobs stopped mid-run: cancelled, past their time limit, and killed then resumed."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from actors.store.experiments import experiment_history, get_experiment
from actors.training import train_model
from tests.records import artifact
from tests.training.conftest import TINY_CNN
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

EPOCH_DELAY_S = 1.5  # long enough to act between epochs, short enough to keep the test quick
SLOW, FAST = "gpu_training_slow", "gpu_training_fast"


def _training(epochs: int) -> dict:
    return {**TINY_CNN, "training": {**TINY_CNN["training"], "epochs": epochs}}


@pytest.fixture(scope="module")
def lane_workers(lane, tmp_path_factory):  # type: ignore[no-untyped-def]
    """This module's gpu_training workers on the lane (started by each test as it needs)."""
    workers = lane.workers(tmp_path_factory.mktemp("resume-worker-logs"))
    try:
        yield workers
    finally:
        workers.stop_all()


def _only_slow_worker(lane, workers) -> None:  # type: ignore[no-untyped-def]
    workers.stop(FAST)
    if SLOW not in workers.processes or workers.processes[SLOW].poll() is not None:
        lane.start_gpu_worker(workers, SLOW, epoch_delay_s=EPOCH_DELAY_S)


def _epochs_done(lane, message_id: str) -> int:  # type: ignore[no-untyped-def]
    job = lane.job(message_id)
    return int((job.metrics or {}).get("epoch", 0)) if job else 0


def test_cancelled_training_stops_at_the_next_epoch_and_ends_cancelled(lane, lane_workers, tiny_dataset, database):
    _only_slow_worker(lane, lane_workers)
    message = lane.send(train_model, experiment_id="exp-cancel", dataset_id=tiny_dataset["dataset_id"], **_training(20))
    wait_until(lambda: _epochs_done(lane, message.message_id) >= 1, timeout=60, what="a first epoch")

    lane.store.request_cancel(message.message_id)
    job = lane.wait(message.message_id, timeout=60)

    assert (job.state, job.attempts) == ("cancelled", 1)
    experiment = get_experiment(database, "exp-cancel")
    assert (experiment["status"], experiment["error"]) == ("cancelled", "cancelled")
    epochs = [row["epoch"] for row in experiment_history(database, "exp-cancel")]
    assert epochs == list(range(1, experiment["epochs_run"] + 1)) and 1 <= len(epochs) < 20
    [event] = lane.notifications("training.failed", "exp-cancel")
    assert event["error"] == "cancelled"


def test_training_past_its_time_limit_ends_timed_out_and_the_experiment_failed(lane, lane_workers, tiny_dataset, database):
    _only_slow_worker(lane, lane_workers)
    message = lane.send(train_model, experiment_id="exp-deadline", dataset_id=tiny_dataset["dataset_id"],
                        options={"time_limit": 4_000}, **_training(20))
    job = lane.wait(message.message_id, timeout=60)

    assert (job.state, job.attempts) == ("timed_out", 1)
    experiment = get_experiment(database, "exp-deadline")
    assert experiment["status"] == "failed" and "time limit" in experiment["error"]
    assert 1 <= experiment["epochs_run"] < 20
    [event] = lane.notifications("training.failed", "exp-deadline")
    assert "time limit" in event["error"]


def test_worker_killed_mid_training_resumes_from_its_checkpoint_after_redelivery(lane, lane_workers, tiny_dataset, database):
    # Given a job past its first epoch on a worker that pauses after each epoch
    _only_slow_worker(lane, lane_workers)
    message = lane.send(train_model, experiment_id="exp-resume", dataset_id=tiny_dataset["dataset_id"], **_training(4))
    wait_until(lambda: _epochs_done(lane, message.message_id) >= 1, timeout=60, what="a first epoch")

    # When its worker is killed outright and a new one starts
    lane_workers.signal(SLOW, signal.SIGKILL)
    lane_workers.processes[SLOW].wait(10)
    killed_at = _epochs_done(lane, message.message_id)
    assert killed_at < 4 and get_experiment(database, "exp-resume")["status"] == "running"
    lane.start_gpu_worker(lane_workers, FAST, ready=False)

    # Then the redelivered message finishes the run from its last checkpoint
    job = lane.wait(message.message_id, timeout=120)
    assert job.state == "succeeded", (job.error_type, job.error_message, lane_workers.log(FAST)[-3000:])
    assert job.attempts == 1  # a redelivery is not a retry
    experiment = get_experiment(database, "exp-resume")
    assert experiment["status"] == "completed" and experiment["epochs_run"] == 4
    assert [row["epoch"] for row in experiment_history(database, "exp-resume")] == [1, 2, 3, 4]
    run = json.loads(Path(artifact(experiment["metrics_path"])).read_text())
    assert run["resumed_from_epoch"] is not None and 1 <= run["resumed_from_epoch"] <= 3
    assert [entry["epoch"] for entry in run["history"]] == [1, 2, 3, 4]
    assert len(lane.notifications("training.completed", "exp-resume")) == 1
