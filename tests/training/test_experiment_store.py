"""Experiment records: one contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from actors.platform.errors import RecordConflict, RecordNotFound
from actors.store.datasets import claim_dataset
from actors.store.db import Database, migrate
from actors.store.experiments import (
    claim_experiment,
    complete_experiment,
    create_experiment,
    experiment_history,
    fail_experiment,
    get_experiment,
    record_epoch,
)
from tests import env
from tests.conftest import recreate_pg_database

SPEC = {"dataset_id": "ds-store", "model_key": "cnn1d", "model_args": {"width": 8}, "training_config": {"epochs": 3},
        "name": "store test", "campaign_id": None}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A migrated, empty database of each kind, with one dataset row."""
    name = f"{env.PG_DATABASE}_experiments"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'experiments.sqlite3'}"
    else:
        url = recreate_pg_database(name)
    migrate(url)
    database = Database(url)
    claim_dataset(database, "ds-store", "setup", source="generator", name="")
    yield database
    database.dispose()
    if request.param == "postgresql":
        with psycopg.connect(env.PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _epoch(epoch: int, val_acc: float, is_best: bool) -> dict:
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 1.0, "train_acc": 0.5, "val_acc": val_acc,
            "lr": 1e-3, "duration_s": 0.1, "data_wait_fraction": 0.01, "is_best": is_best}


def _new_id() -> str:
    return f"exp-{uuid.uuid4().hex[:12]}"


def test_claim_creates_from_spec_lets_the_same_job_back_in_and_refuses_another(store):
    experiment_id = _new_id()
    with pytest.raises(RecordNotFound):
        claim_experiment(store, experiment_id, "job-a", spec=None, checkpoint_dir="/x")
    claim = claim_experiment(store, experiment_id, "job-a", spec=SPEC, checkpoint_dir="/x")
    assert not claim.done and claim.spec == SPEC
    assert not claim_experiment(store, experiment_id, "job-a", spec=None, checkpoint_dir="/x").done  # redelivery
    with pytest.raises(RecordConflict, match="being trained by job job-a"):
        claim_experiment(store, experiment_id, "job-b", spec=None, checkpoint_dir="/x")
    assert get_experiment(store, experiment_id)["status"] == "running"


def test_history_keeps_one_row_per_epoch_when_an_epoch_is_reported_again(store):
    experiment_id = _new_id()
    claim_experiment(store, experiment_id, "job-a", spec=SPEC, checkpoint_dir="/x")
    record_epoch(store, experiment_id, _epoch(1, 0.5, True))
    record_epoch(store, experiment_id, _epoch(2, 0.4, False))
    record_epoch(store, experiment_id, _epoch(2, 0.7, True))  # the resumed run redoes epoch 2
    history = experiment_history(store, experiment_id)
    assert [(row["epoch"], row["val_acc"]) for row in history] == [(1, 0.5), (2, 0.7)]
    experiment = get_experiment(store, experiment_id)
    assert (experiment["epochs_run"], experiment["best_epoch"], experiment["best_val_accuracy"]) == (2, 2, 0.7)


def test_completed_experiment_is_never_redone_failed_or_completed_by_another_job(store):
    experiment_id = _new_id()
    claim_experiment(store, experiment_id, "job-a", spec=SPEC, checkpoint_dir="/x")
    with pytest.raises(RecordConflict):
        complete_experiment(store, experiment_id, "job-b", epochs_run=3)
    summary = complete_experiment(store, experiment_id, "job-a", epochs_run=3, metrics={"window_accuracy": 0.9})
    assert summary["status"] == "completed" and summary["test_accuracy"] == 0.9
    claim = claim_experiment(store, experiment_id, "job-c", spec=None, checkpoint_dir="/x")
    assert claim.done and claim.summary == summary
    assert fail_experiment(store, experiment_id, "job-a", "late failure") == "kept"
    assert get_experiment(store, experiment_id)["status"] == "completed"


def test_failure_is_recorded_only_by_the_job_that_holds_the_run(store):
    experiment_id = _new_id()
    assert fail_experiment(store, experiment_id, "job-a", "boom") == "absent"
    claim_experiment(store, experiment_id, "job-a", spec=SPEC, checkpoint_dir="/x")
    assert fail_experiment(store, experiment_id, "job-b", "not mine") == "kept"
    assert fail_experiment(store, experiment_id, "job-a", "cancelled", status="cancelled") == "recorded"
    experiment = get_experiment(store, experiment_id)
    assert (experiment["status"], experiment["error"]) == ("cancelled", "cancelled")
    # A new job may take up a cancelled or failed run (and resume from its checkpoint).
    assert not claim_experiment(store, experiment_id, "job-b", spec=None, checkpoint_dir="/x").done
    assert get_experiment(store, experiment_id)["error"] is None


def test_create_refuses_an_existing_id(store):
    experiment_id = _new_id()
    assert create_experiment(store, experiment_id, **SPEC)["status"] == "pending"
    with pytest.raises(RecordConflict, match="already exists"):
        create_experiment(store, experiment_id, **SPEC)


def test_concurrent_claims_of_a_new_experiment_leave_exactly_one_holder(store):
    experiment_id, outcomes = _new_id(), []
    barrier = threading.Barrier(4)

    def claim(job_id: str) -> None:
        barrier.wait()
        try:
            claim_experiment(store, experiment_id, job_id, spec=SPEC, checkpoint_dir="/x")
            outcomes.append(job_id)
        except RecordConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=claim, args=(f"job-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    holders = [o for o in outcomes if o != "conflict"]
    assert len(outcomes) == 4 and len(holders) == 1
    assert get_experiment(store, experiment_id)["job_id"] == holders[0]
