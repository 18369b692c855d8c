"""run_benchmarks through a real cpu_processing worker: a saved model (an experiment, a deployment's
variant) timed per batch size and thread count, an HTTP endpoint measured within its bounds, and
refusals at send."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from actors.deploy.inputs import deployable_experiment, original_variant
from actors.platform.errors import PayloadInvalid
from actors.platform.jobs import wait_for_job
from actors.quality import run_benchmarks
from actors.store.db import Database
from actors.store.deployments import ensure_deployment
from tests.records import artifact, make_dataset, record_trained_experiment

MODEL = {"model_key": "cnn1d", "model_args": {"width": 4, "depth": 1}}
TRAINING = {"epochs": 1, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def experiment(database: Database) -> dict[str, Any]:
    """A tiny cnn1d trained one epoch on a tiny dataset, recorded as a completed experiment."""
    return record_trained_experiment(database, "exp-bench-q", make_dataset(database, "ds-bench-q"), MODEL, TRAINING)


def _finished(message) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    job = wait_for_job(message.message_id, timeout_s=180)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    return job.result


def test_an_experiment_is_timed_per_batch_size_and_thread_count_on_its_test_windows(workers, experiment):
    result = _finished(run_benchmarks.send(experiment_id=experiment["experiment_id"], num_samples=10,
                                           batch_sizes=[1, 4], threads=[1, 2], warmup=1))
    assert (result["variant"], result["kind"], result["model_key"]) == ("torch_fp32", "torch", "cnn1d")
    rows = {(r["threads"], r["batch_size"]): r for r in result["results"]}
    assert set(rows) == {(1, 1), (1, 4), (2, 1), (2, 4)}
    assert rows[(1, 1)]["batches"] == 10 and rows[(1, 4)]["batches"] == 3 and rows[(1, 4)]["windows"] == 12
    for row in rows.values():
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] and row["throughput_per_s"] > 0
    assert json.loads(Path(artifact(f"{result['artifacts']}/report.json")).read_text())["results"] == result["results"]


def test_a_deployment_variant_is_timed(workers, experiment, database):
    ensure_deployment(database, "dep-bench-q", experiment_id=experiment["experiment_id"], config={"stage": "test"},
                      original=original_variant(deployable_experiment(database, experiment["experiment_id"])))
    result = _finished(run_benchmarks.send(deployment_id="dep-bench-q", variant="torch_fp32", num_samples=4,
                                           batch_sizes=[2]))
    assert result["target"] == "deployment dep-bench-q" and [r["windows"] for r in result["results"]] == [4]


def test_an_unknown_variant_fails_at_once_naming_the_ones_there(workers, experiment, database):
    ensure_deployment(database, "dep-bench-q", experiment_id=experiment["experiment_id"], config={"stage": "test"},
                      original=original_variant(deployable_experiment(database, experiment["experiment_id"])))
    job = wait_for_job(run_benchmarks.send(deployment_id="dep-bench-q", variant="onnx_fp32").message_id, timeout_s=60)
    assert (job.state, job.attempts, job.error_type) == ("failed", 1, "InvalidInput")
    assert "no variant 'onnx_fp32'" in job.error_message and "torch_fp32" in job.error_message


class _Endpoint:
    """A small inference endpoint on loopback: counts the requests, answers 200 with logits, or 503."""

    def __init__(self, status: int = 200) -> None:
        endpoint = self
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.requests.append(body)
                answer = json.dumps({"logits": [0.0] * 11}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/predict"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():  # type: ignore[no-untyped-def]
    server = _Endpoint()
    yield server
    server.close()


def test_an_endpoint_gets_at_most_max_requests_and_its_latency_is_reported(workers, endpoint):
    result = _finished(run_benchmarks.send(api_url=endpoint.url, max_requests=12, concurrency=3, max_duration_s=60))
    assert (result["requests"], result["succeeded"], result["statuses"], result["stopped_by"]) == (
        12, 12, {"200": 12}, "count")
    assert result["ok"] is True
    assert len(endpoint.requests) == 12
    # The default request is one 1 s window of a generated record
    assert len(endpoint.requests[0]["signal"]) == 20_480 and endpoint.requests[0]["sampling_rate"] == 20_480
    assert 0 < result["p50_ms"] <= result["p99_ms"] and result["throughput_per_s"] > 0


def test_an_endpoint_that_answers_errors_is_measured_not_retried(workers):
    failing = _Endpoint(status=503)
    try:
        message = run_benchmarks.send(api_url=failing.url, request_body={"x": 1}, max_requests=3)
        result = _finished(message)
    finally:
        failing.close()
    assert (result["ok"], result["succeeded"], result["statuses"]) == (False, 0, {"503": 3})
    assert failing.requests == [{"x": 1}] * 3


def test_an_endpoint_host_outside_the_allowed_ones_fails_at_once(workers):
    job = wait_for_job(run_benchmarks.send(api_url="http://192.0.2.1:9/predict").message_id, timeout_s=60)
    assert (job.state, job.attempts, job.error_type) == ("failed", 1, "InvalidInput")
    assert "PFD_BENCHMARK_API_HOSTS" in job.error_message


@pytest.mark.parametrize(("payload", "match"), [
    ({}, "give exactly one of names"),
    ({"names": ["features"], "experiment_id": "e"}, "give exactly one of names"),
    ({"experiment_id": "e", "variant": "onnx_fp32"}, "variant goes with deployment_id"),
    ({"api_url": "file:///etc/passwd"}, "api_url"),
    ({"experiment_id": "e", "num_samples": 0}, "num_samples"),
])
def test_a_bad_benchmark_request_is_refused_at_send(app, payload, match):
    with pytest.raises(PayloadInvalid, match=match):
        run_benchmarks.send(**payload)
