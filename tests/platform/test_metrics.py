"""Prometheus: ``pfd metrics`` serves queue depths, job outcomes per actor and Dramatiq's worker metrics."""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from actors.platform.jobs import wait_for_job
from tests.probe_actors import PROBES, flaky
from tests.servers import free_port
from tests.waiting import wait_until


@pytest.fixture
def metrics_url(workers, tmp_path):  # type: ignore[no-untyped-def]
    """A high_priority worker recording Dramatiq's metrics, and the host's metrics server."""
    port = free_port()
    env = {"PFD_PROMETHEUS": "1", "PFD_METRICS_DIR": str(tmp_path / "prometheus")}
    extra = type(workers)(workers.log_dir, extra_env=env)
    extra.start("high_priority", tag="high_priority-metrics")
    extra.start("metrics", tag="metrics", command=f"pfd metrics --port {port}")
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: _answers(url), timeout=60, what="the metrics server")
    yield url
    extra.stop_all()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _samples(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_endpoint_serves_queue_depths_job_outcomes_and_worker_metrics(metrics_url):
    probe = PROBES["high_priority"]
    sent = [probe.send() for _ in range(20)]
    dead = flaky.send(key=f"test:{uuid.uuid4().hex}", failures=4)  # every attempt fails: dead-lettered
    for message in sent:
        assert wait_for_job(message.message_id, timeout_s=60).state == "succeeded"
    assert wait_for_job(dead.message_id, timeout_s=60).state == "failed"

    def scraped():  # type: ignore[no-untyped-def]
        samples = _samples(metrics_url)
        # The metrics worker shares the queue with the session's high_priority worker, which
        # may have taken every probe so far: send one more until the metrics worker ran one.
        if _value(samples, "dramatiq_messages_total", queue_name="high_priority") < 1:
            probe.send()
            return None
        return samples

    samples = wait_until(scraped, timeout=60, what="the metrics worker to process a message")
    assert _value(samples, "pfd_jobs_total", actor="probe_high_priority", outcome="succeeded") >= 20
    assert _value(samples, "pfd_jobs_total", actor="flaky", queue="high_priority", outcome="failed") >= 1
    assert _value(samples, "pfd_jobs_total", actor="flaky", outcome="retrying") >= 3
    assert _value(samples, "pfd_queue_messages", queue="high_priority", state="dead") >= 1
    assert {"queued", "in_flight", "delayed", "dead"} == {
        s.labels["state"] for s in samples["pfd_queue_messages"] if s.labels["queue"] == "gpu_training"}
    count = _value(samples, "pfd_job_duration_seconds_count", actor="probe_high_priority")
    assert count >= 20 and _value(samples, "pfd_job_duration_seconds_bucket", actor="probe_high_priority", le="+Inf") == count
    assert _value(samples, "pfd_worker_processes") >= 4
    assert all(_value(samples, "pfd_queue_workers", queue=queue) >= 1
               for queue in ("high_priority", "gpu_training", "cpu_processing", "notifications"))
    assert "dramatiq_message_duration_milliseconds_bucket" in samples
