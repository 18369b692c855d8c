"""Faults of worker processes: killed mid-job, stopped gracefully, fed poison messages.

Each test starts its own cpu_processing worker from the Procfile line, so killing it does
not disturb other tests. The test environment's broker heartbeat timeout is 5 s, so a
killed worker's messages come back within seconds (at the next sweep of dead workers).
"""

from __future__ import annotations

import os
import pickle
import signal
import time
import uuid

import dramatiq
import pytest

from actors.platform.broker.redis_broker import UNDECODABLE_REASON
from actors.platform.dead_letters import list_dead_letters
from actors.platform.jobs import get_job, wait_for_job
from actors.platform.queue_depths import queue_depths
from tests.probe_actors import PROBES, durable_work, kill_own_process
from tests.waiting import wait_until
from tests.workers import Workers

pytestmark = pytest.mark.slow


@pytest.fixture
def own_workers(app, tmp_path):  # type: ignore[no-untyped-def]
    running = Workers(tmp_path)
    yield running
    running.stop_all()


def _cpu_worker(workers: Workers, tag: str, threads: int = 4) -> None:
    workers.start("cpu_processing", tag=tag, command=workers.cpu_command(threads))


def test_sigkill_mid_job_loses_nothing_and_does_nothing_twice(own_workers, redis_client, workers, reliability):
    # A redelivered message may land on the next victim and be killed again: that is the
    # operator's doing, not the message's, so the crash guard is out of this test's way.
    own_workers.extra_env["PFD_CRASH_GUARD_MAX_STARTS"] = "100"
    # The shared workers also consume cpu_processing; pause them out of this test's way.
    workers.pause_idle("cpu_processing", redis_client)
    try:
        key = f"test:{uuid.uuid4().hex}"
        sent = []
        for round_ in range(5):
            _cpu_worker(own_workers, f"victim{round_}")
            # 10 s: long enough to be killed mid-job (the kill follows the round's starts), short
            # enough that redelivered jobs of earlier rounds, which may hold the victim's threads
            # first, do not stretch each round (30 s jobs made this test 2.5 minutes).
            batch = [durable_work.send(key=key, seconds=10) for _ in range(4)]
            sent += batch
            wait_until(lambda n=len(sent): redis_client.hlen(f"{key}:starts") >= n, timeout=150,
                       what="the round's jobs to start")
            own_workers.signal(f"victim{round_}", signal.SIGKILL)
            own_workers.stop(f"victim{round_}")
        killed_at = time.monotonic()
        _cpu_worker(own_workers, "survivor", threads=20)
        # Redelivered messages run their full 10 s; what matters is that each completes once.
        for message in sent:
            job = wait_for_job(message.message_id, timeout_s=150)
            assert job.state == "succeeded", job.error_message
        done = {k.decode(): int(v) for k, v in redis_client.hgetall(f"{key}:done").items()}
        assert len(sent) == 20
        assert sorted(done) == sorted(m.message_id for m in sent)  # 0 lost
        assert set(done.values()) == {1}  # 0 done twice
        reliability.record(
            "worker_sigkill", fault="cpu_processing worker killed (SIGKILL) mid-job, 5 rounds of 4 jobs",
            outcome="every killed message redelivered with its id and completed exactly once",
            messages=len(sent), lost=len(sent) - len(done), done_twice=sum(1 for v in done.values() if v > 1),
            all_done_after_last_kill_s=round(time.monotonic() - killed_at, 1), job_seconds=10,
        )
    finally:
        workers.signal("cpu_processing", signal.SIGCONT)


def test_sigterm_lets_running_jobs_finish_and_requeues_the_rest(own_workers, redis_client, workers, reliability):
    workers.pause_idle("cpu_processing", redis_client)
    try:
        key = f"test:{uuid.uuid4().hex}"
        _cpu_worker(own_workers, "graceful", threads=1)
        sent = [durable_work.send(key=key, seconds=1.5) for _ in range(5)]
        wait_until(lambda: redis_client.hlen(f"{key}:starts") >= 1, what="the first job to start")
        own_workers.stop("graceful")  # SIGTERM, as a Procfile runner sends it
        finished_before = redis_client.hlen(f"{key}:done")
        assert finished_before >= 1  # the running job finished instead of being dropped
        _cpu_worker(own_workers, "after", threads=2)
        for message in sent:
            assert wait_for_job(message.message_id, timeout_s=60).state == "succeeded"
        assert {int(v) for v in redis_client.hvals(f"{key}:done")} == {1}
        reliability.record(
            "worker_sigterm", fault="SIGTERM to the worker's process group while a job runs (Procfile runner stop)",
            outcome="the running job finished; the prefetched ones were requeued and ran once on the next worker",
            messages=len(sent), finished_before_exit=finished_before, done_twice=0,
        )
    finally:
        workers.signal("cpu_processing", signal.SIGCONT)


def test_message_for_an_unknown_actor_is_dead_lettered_and_the_worker_goes_on(workers, redis_client):
    poison = dramatiq.Message(queue_name="high_priority", actor_name="no_such_actor", args=(), kwargs={}, options={})
    dramatiq.get_broker().enqueue(poison)
    wait_until(lambda: any(d.message_id == poison.message_id for d in list_dead_letters(redis_client, "high_priority")),
               what="the poison message to be dead-lettered")
    after = PROBES["high_priority"].send()
    assert wait_for_job(after.message_id, timeout_s=30).state == "succeeded"
    assert get_job(poison.message_id).state in ("queued", "failed")


def remove_message(redis, queue: str, message_id: str) -> None:
    """Delete a message from a queue, wherever it waits (queued, or fetched by a stopped worker)."""
    for hash_key in (f"dramatiq:{queue}.msgs", f"dramatiq:{queue}.DQ.msgs"):
        for redis_id, body in redis.hscan_iter(hash_key):
            if message_id.encode() in body:
                redis.hdel(hash_key, redis_id)
                redis.lrem(hash_key.removesuffix(".msgs"), 0, redis_id)


def _whereabouts(redis, message_id: str, log: str) -> str:
    """Where a cpu_processing message is, its job record, the queue's depth and the worker's last lines."""
    holders = [key.decode() for key in redis.scan_iter("dramatiq:__acks__.*")
               if any(message_id.encode() in (redis.hget("dramatiq:cpu_processing.msgs", rid) or b"")
                      for rid in redis.smembers(key))]
    job = get_job(message_id)
    return (f"job {job.state}, {job.deliveries} deliveries; held by {holders or 'no worker'}; "
            f"{queue_depths(redis, ('cpu_processing',))[0]}; worker log ends:\n{log[-3000:]}")


class _Exploit:
    """Unpickling this runs a shell command: what a pickled payload could do to a worker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_message_is_dead_lettered_unread_and_the_messages_around_it_run(workers, redis_client, tmp_path, reliability):
    assert isinstance(dramatiq.get_encoder(), dramatiq.JSONEncoder)  # messages are JSON only
    marker = tmp_path / "unpickled"
    body = pickle.dumps(_Exploit(str(marker)))
    redis_id = str(uuid.uuid4())
    # Pause the worker so the pickled body and the probes arrive in one prefetch batch.
    workers.signal("high_priority", signal.SIGSTOP)
    try:
        redis_client.hset("dramatiq:high_priority.msgs", redis_id, body)
        redis_client.rpush("dramatiq:high_priority", redis_id)
        probes = [PROBES["high_priority"].send() for _ in range(5)]
    finally:
        workers.signal("high_priority", signal.SIGCONT)
    for probe in probes:  # none is stranded behind the bad body
        assert wait_for_job(probe.message_id, timeout_s=30).state == "succeeded"
    letter = wait_until(
        lambda: next((d for d in list_dead_letters(redis_client, "high_priority", limit=1000) if d.redis_id == redis_id), None),
        what="the pickled message to be dead-lettered",
    )
    assert not letter.readable and letter.reason == UNDECODABLE_REASON
    assert not marker.exists()
    log = workers.log("high_priority")
    assert redis_id in log and "message.refused" in log
    assert "Consumer encountered an unexpected error" not in log
    reliability.record(
        "pickled_message", fault="a pickled body (whose unpickling runs a shell command) pushed into a queue",
        outcome="dead-lettered unread with its reason; never unpickled; the 5 messages fetched with it ran",
        dead_lettered=True, code_ran=marker.exists(), stranded=0,
    )


def test_a_message_that_kills_its_worker_process_is_dead_lettered_and_the_worker_goes_on(
    own_workers, redis_client, workers, reliability,
):
    workers.pause_idle("cpu_processing", redis_client)
    message = kill_own_process.send()
    try:
        started_at, deaths = time.monotonic(), 0

        def dead_lettered() -> bool:
            return any(d.message_id == message.message_id for d in list_dead_letters(redis_client, "cpu_processing", limit=1000))

        # A supervisor's part: start the worker again each time the message takes it down.
        while not dead_lettered():
            assert time.monotonic() - started_at < 400, f"still not dead-lettered after {deaths} deaths"
            tag = f"crash{deaths}"
            _cpu_worker(own_workers, tag, threads=1)
            wait_until(lambda t=tag: own_workers.processes[t].poll() is not None or dead_lettered(), timeout=120,
                       what="the worker to die or the message to be dead-lettered",
                       state=lambda t=tag: _whereabouts(redis_client, message.message_id, own_workers.log(t)))
            if own_workers.processes[tag].poll() is not None:
                deaths += 1
        job = get_job(message.message_id)
        assert job.state == "failed" and job.error_type == "WorkerCrashLoop"
        assert "worker process died each time" in job.error_message
        assert deaths == 3  # crash_guard_max_starts
        after = PROBES["cpu_processing"].send()
        assert wait_for_job(after.message_id, timeout_s=60).state == "succeeded"
        reliability.record(
            "worker_process_killed_by_its_message",
            fault="a message whose every start kills its worker process (SIGKILL from inside the job)",
            outcome="redelivered after each death; on its 4th start refused, failed with the reason and dead-lettered; "
                    "the restarted worker goes on",
            worker_deaths=deaths, dead_lettered_after_s=round(time.monotonic() - started_at, 1),
        )
    finally:
        # Should the test fail first, the message must not reach the shared workers and kill them.
        own_workers.stop_all()
        remove_message(redis_client, "cpu_processing", message.message_id)
        workers.signal("cpu_processing", signal.SIGCONT)
