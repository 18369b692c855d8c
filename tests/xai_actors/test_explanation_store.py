"""The explanation store on SQLite and PostgreSQL: ids, claims, completion, batches, migration."""

from __future__ import annotations

import os

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from actors.platform.errors import RecordConflict, RecordNotFound
from actors.store import explanations as store
from actors.store.datasets import claim_dataset
from actors.store.db import Database, migrate
from actors.store.experiments import create_experiment
from tests import env
from tests.conftest import recreate_pg_database

SIGNAL = {"dataset_id": "ds-1", "split": "test", "record": 2, "window": 4}
PARAMS = {"n_steps": 8, "batch_size": 16, "summary_segments": 32, "top_k": 5}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):  # type: ignore[no-untyped-def]
    """An empty database of each backend, migrated to head, with one dataset and experiment."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    else:
        url = recreate_pg_database(f"pfd_test_xai_store_{os.getpid()}")
    migrate(url)
    db = Database(url)
    claim_dataset(db, "ds-1", "setup", source="generator", name="")
    create_experiment(db, "exp-1", dataset_id="ds-1", model_key="cnn1d", model_args={}, training_config={},
                      name="", campaign_id=None)
    yield db
    db.dispose()
    if request.param == "postgresql":
        with psycopg.connect(env.PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _claim(db: Database, job_id: str, key: str = "xp-a") -> store.ExplanationClaim:
    return store.claim_explanation(db, key, job_id, experiment_id="exp-1", signal=SIGNAL,
                                   method="integrated_gradients", params=PARAMS)


def test_explanation_key_names_the_request_and_only_the_request():
    key = store.explanation_key("exp-1", SIGNAL, "integrated_gradients", PARAMS)
    assert key == store.explanation_key("exp-1", {**SIGNAL, "extra": 1}, "integrated_gradients", dict(PARAMS))
    assert key.startswith("xp-") and len(key) <= 64
    others = [
        store.explanation_key("exp-2", SIGNAL, "integrated_gradients", PARAMS),
        store.explanation_key("exp-1", {**SIGNAL, "window": 3}, "integrated_gradients", PARAMS),
        store.explanation_key("exp-1", SIGNAL, "gradcam", PARAMS),
        store.explanation_key("exp-1", SIGNAL, "integrated_gradients", {**PARAMS, "n_steps": 9}),
    ]
    assert len({key, *others}) == 5


def test_an_explanation_is_claimed_by_one_job_completed_once_and_then_reused(database):
    assert _claim(database, "job-1").done is False
    assert _claim(database, "job-1").done is False  # the same job, redelivered
    with pytest.raises(RecordConflict, match="being computed by job job-1"):
        _claim(database, "job-2")
    summary = store.complete_explanation(database, "xp-a", "job-1", npz_path="/a.npz", png_path="/a.png",
                                         summary={"predicted_class": 3})
    assert summary["status"] == "completed" and summary["signal"] == SIGNAL and summary["params"] == PARAMS
    again = _claim(database, "job-2")
    assert again.done and again.summary == summary
    assert store.get_explanation(database, "xp-a") == summary
    assert store.find_explanations(database, ["xp-a", "xp-missing"]) == {"xp-a": summary}
    with pytest.raises(RecordNotFound):
        store.get_explanation(database, "xp-missing")


def test_a_failed_explanation_records_why_and_can_be_tried_again(database):
    _claim(database, "job-1")
    store.fail_explanation(database, "xp-a", "job-2", "not this job's to mark")
    assert store.get_explanation(database, "xp-a")["status"] == "running"
    store.fail_explanation(database, "xp-a", "job-1", "InvalidInput: bad window")
    failed = store.get_explanation(database, "xp-a")
    assert (failed["status"], failed["error"]) == ("failed", "InvalidInput: bad window")
    assert _claim(database, "job-2").done is False
    assert store.get_explanation(database, "xp-a")["job_id"] == "job-2"


def test_a_batch_belongs_to_one_job_and_finishes_once(database):
    members = [{"signal": SIGNAL, "job_id": "m-1", "explanation_id": "xp-a"}]
    batch = store.create_batch(database, "b-1", "job-1", fanout_id="xai-b-1", experiment_id="exp-1",
                               method="gradcam", params={}, members=members)
    assert (batch["status"], batch["n_signals"], batch["members"]) == ("running", 1, members)
    with pytest.raises(RecordConflict, match="belongs to job job-1"):
        store.create_batch(database, "b-1", "job-2", fanout_id="xai-b-1", experiment_id="exp-1",
                           method="gradcam", params={}, members=members)
    links = [{**members[0], "status": "completed"}]
    first = store.finish_batch(database, "b-1", status="completed", done=1, failed=0, links=links, plot_path="/p.png")
    second = store.finish_batch(database, "b-1", status="failed", done=0, failed=1, links=[], plot_path=None)
    assert first == second and (first["status"], first["done"], first["plot_path"]) == ("completed", 1, "/p.png")
    stored = store.get_batch(database, "b-1")
    assert stored["links"] == links and stored["finished_at"] is not None
    assert store.find_batch(database, "b-2") is None
    with pytest.raises(RecordNotFound):
        store.finish_batch(database, "b-2", status="completed", done=0, failed=0, links=[], plot_path=None)


def test_migration_0004_adds_and_removes_only_the_explanation_tables(database):
    def tables() -> set[str]:
        engine = create_engine(database.url)
        try:
            return set(inspect(engine).get_table_names())
        finally:
            engine.dispose()

    assert {"explanations", "explanation_batches"} <= tables()
    database.dispose()
    migrate(database.url, "0003", direction="downgrade")
    after = tables()
    assert not after & {"explanations", "explanation_batches"} and "experiments" in after
    migrate(database.url)
    assert {"explanations", "explanation_batches"} <= tables()
