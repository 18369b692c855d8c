"""Queue topology: each queue's messages are processed only by that queue's worker."""

from __future__ import annotations

from config.queues import QUEUES
from tests.probe_actors import PROBES
from tests.workers import procfile_lines


def test_procfile_has_one_worker_line_per_queue_and_the_scheduler():
    lines = procfile_lines()
    for queue in QUEUES:
        assert f"--queues {queue} " in lines[queue] + " "
    assert lines["gpu_training"].endswith("--processes 1 --threads 1")
    assert lines["scheduler"].startswith("pfd scheduler actors.app")


def test_message_sent_to_each_queue_is_processed_only_by_that_queues_worker(workers):
    # Given the four Procfile workers, when several probes go to each queue,
    messages = {queue: [PROBES[queue].send() for _ in range(5)] for queue in QUEUES}
    # then every result names the process started for that queue's line.
    for queue, sent in messages.items():
        for message in sent:
            result = message.get_result(block=True, timeout=30_000)
            assert result["tag"] == queue
            assert result["queue"] == queue
