"""Periodic maintenance through real workers, and the periodiq scheduler process."""

from __future__ import annotations

import os
import time
import uuid

import dramatiq
from sqlalchemy import select

from actors.maintenance import clean_artifacts, reap_stale_jobs, report_dead_letters
from actors.platform.jobs import get_job, job_store, wait_for_job
from actors.store.datasets import claim_dataset, get_dataset
from actors.store.db import get_database
from actors.store.jobs import JobStore
from actors.store.models import Job
from actors.store.notifications import InboxItem
from config.settings import get_settings
from tests.waiting import wait_until


def _db():
    return get_database(get_settings().database_url)


def _db_job(message_id: str) -> Job | None:
    with _db().session() as session:
        return session.get(Job, message_id)


def test_reaper_fails_a_job_whose_worker_died_and_the_dataset_it_held(workers):
    # Given a job recorded as running on a worker that no longer beats its heartbeat,
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    dataset_id = f"reap-{ghost}"
    start = JobStore.start_fields(ghost, "generate_dataset", "cpu_processing", attempt=1,
                                  worker="gone-host:1", started_at=time.time() - 120)
    job_store().record(ghost, start, ttl_s=3600)
    claim_dataset(_db(), dataset_id, ghost, source="generator", name="held")
    wait_until(lambda: (row := _db_job(ghost)) is not None and row.state == "running", what="the recorded job")
    # when the reaper runs with a short grace,
    result = wait_for_job(reap_stale_jobs.send(grace_s=1).message_id, timeout_s=30).result
    # then the job and its dataset are failed with the reason.
    assert ghost in {r["message_id"] for r in result["reaped"]}
    job = get_job(ghost)
    assert (job.state, job.error_type) == ("failed", "JobReaped")
    assert "stopped sending heartbeats" in job.error_message
    dataset = get_dataset(_db(), dataset_id)
    assert dataset["status"] == "failed" and "heartbeats" in dataset["error"]


def test_cleanup_deletes_exactly_what_its_dry_run_listed(workers):
    root = get_settings().artifact_root
    old = time.time() - 7 * 3600
    orphan = root / "datasets" / f"orphan-{uuid.uuid4().hex[:8]}.h5"
    temp = root / "datasets" / f"half-{uuid.uuid4().hex[:8]}.h5.partial"
    young = root / "datasets" / f"young-{uuid.uuid4().hex[:8]}.h5"
    for path in (orphan, temp, young):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    for path in (orphan, temp):
        os.utime(path, (old, old))
    dry = wait_for_job(clean_artifacts.send(dry_run=True).message_id, timeout_s=60).result
    listed = {c["path"] for c in dry["deleted"]}
    assert {str(orphan), str(temp)} <= listed and str(young) not in listed
    assert orphan.exists() and temp.exists()  # a dry run deletes nothing
    real = wait_for_job(clean_artifacts.send().message_id, timeout_s=60).result
    assert {c["path"] for c in real["deleted"]} == listed
    assert not orphan.exists() and not temp.exists() and young.exists()


def test_dead_letters_above_the_threshold_are_reported_once_an_hour(workers, redis_client):
    poison = dramatiq.Message(queue_name="high_priority", actor_name="strict", args=(),
                              kwargs={"key": "x", "failures": "none"}, options={})
    dramatiq.get_broker().enqueue(poison)
    wait_for_job(poison.message_id, timeout_s=30)
    report = wait_until(
        lambda: (r := wait_for_job(report_dead_letters.send(threshold=1).message_id, timeout_s=30).result)
        and r["counts"].get("high_priority/strict") and r,
        what="the dead letter to be counted",
    )
    assert report["announced"] is True and report["total"] >= 1
    event_id = f"deadletters:{time.strftime('%Y%m%d%H', time.gmtime())}"

    def inbox():
        with _db().session() as session:
            return list(session.scalars(select(InboxItem).where(InboxItem.event_id.like("deadletters:%"))))

    rows = wait_until(inbox, what="the dead-letter report in the inbox")
    assert rows[0].event_type == "deadletters.reported" and event_id in {r.event_id for r in rows}


def test_periodiq_scheduler_enqueues_a_periodic_actor_at_its_schedule(workers, tmp_path):
    from tests.workers import Workers

    scheduler = Workers(tmp_path, extra_modules=(), extra_env={"PFD_SCHEDULE_REAP_STALE_JOBS": "* * * * *"})
    scheduler.start("scheduler", tag="scheduler")
    started = time.time()
    try:
        def scheduled():
            with _db().session() as session:
                rows = session.scalars(select(Job).where(Job.actor == "reap_stale_jobs", Job.state == "succeeded"))
                return [r for r in rows if r.enqueued_at and r.enqueued_at.timestamp() >= started - 1]

        runs = wait_until(scheduled, timeout=130, interval=0.5, what="the scheduler to enqueue reap_stale_jobs")
        assert runs[0].queue == "high_priority"
    finally:
        scheduler.stop_all()
