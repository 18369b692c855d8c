"""The dashboard's JSON API and access rules, against real Redis, PostgreSQL and Procfile workers."""

from __future__ import annotations

import json
import re
import tempfile
import time
import uuid
from pathlib import Path

from actors.platform.artifact_files import publish
from actors.platform.dead_letters import list_dead_letters
from actors.platform.jobs import get_job, wait_for_job
from tests.probe_actors import flaky, stepper
from tests.records import make_dataset
from tests.waiting import wait_until
from tests.web.conftest import bearer, sign_in


def test_nothing_is_served_without_credentials(client):
    for path in ("/api/queues", "/api/jobs", "/api/jobs/x", "/api/openapi.json", "/api/dead-letters",
                 "/api/records/datasets", "/api/artifacts/a.png", "/api/queues/events"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == "Bearer"
    assert client.post("/api/jobs", json={"actor": "stepper", "payload": {}}).status_code == 401
    for path in ("/", "/jobs", "/jobs/x", "/dead-letters", "/records/experiments", "/send"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next="), path
    # Every route the app has, whatever its method: 401 (API) or the sign-in page (pages).
    from actors.web import api, pages, record_pages

    for route in [*api.router.routes, *pages.signed_in.routes, *record_pages.records_router.routes]:
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in route.methods - {"HEAD"}:
            answer = client.request(method, path)
            if path.startswith("/api/"):
                assert answer.status_code == 401, (method, path, answer.status_code)
            else:
                assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), (method, path)
    # A wrong token or password counts for nothing.
    assert client.get("/api/queues", headers={"Authorization": "Bearer nope"}).status_code == 401
    page = client.get("/login")
    assert "Sign in" in page.text


def test_the_openapi_document_lists_the_api(client):
    document = client.get("/api/openapi.json", headers=bearer("viewer")).json()
    assert {"/api/queues", "/api/jobs", "/api/jobs/{any_id}", "/api/jobs/{message_id}/cancel",
            "/api/dead-letters/{queue}/retry"} <= set(document["paths"])


def test_queues_overview_counts_every_queue_and_its_live_workers(client, workers):
    # Activity counts recorded jobs: at least the workers' four start-up probes, once recorded.
    overview = wait_until(lambda: (o := client.get("/api/queues", headers=bearer("viewer")).json())
                          ["activity"]["jobs_last_hour"] >= 4 and o, what="the probes to be recorded")
    rows = {row["queue"]: row for row in overview["queues"]}
    assert set(rows) == {"high_priority", "gpu_training", "cpu_processing", "notifications"}
    for row in rows.values():
        assert {"queued", "in_flight", "delayed", "dead"} <= set(row) and row["workers"]


def test_an_operator_sends_a_job_and_follows_it_to_success(client, workers):
    answer = client.post("/api/jobs", headers=bearer("operator"),
                         json={"actor": "stepper", "payload": {"steps": 3, "step_s": 0.05}})
    assert answer.status_code == 202, answer.text
    message_id = answer.json()["message_id"]
    tree = wait_until(lambda: (t := client.get(f"/api/jobs/{message_id}", headers=bearer("viewer")).json()["tree"])
                      ["state"] == "succeeded" and t, what="the job to succeed")
    assert tree["nodes"][0]["result"] == {"steps": 3} and tree["progress"] == 1.0
    # It is listed, with the filters pfd jobs takes.
    listed = wait_until(lambda: (jobs := client.get("/api/jobs", headers=bearer("viewer"),
                                                    params={"actor": "stepper", "state": "succeeded"}).json()["jobs"])
                        and message_id in {job["message_id"] for job in jobs} and jobs,
                        what="the recorded job in the list")
    assert all(job["actor"] == "stepper" and job["state"] == "succeeded" for job in listed)


def test_a_payload_is_checked_by_the_actors_schema_as_send_checks_it(client):
    bad = client.post("/api/jobs", headers=bearer("operator"), json={"actor": "stepper", "payload": {"steps": 0}})
    assert bad.status_code == 422 and "steps" in bad.json()["detail"]
    unknown = client.post("/api/jobs", headers=bearer("operator"), json={"actor": "no_such", "payload": {}})
    assert unknown.status_code == 404 and "no_such" in unknown.json()["detail"]
    assert client.get("/api/jobs", headers=bearer("viewer"), params={"state": "sleeping"}).status_code == 422
    # A NUL (found by the fuzzing: PostgreSQL refuses it in text) is refused before any read.
    assert client.get("/api/jobs", headers=bearer("viewer"), params={"actor": "\x00"}).status_code == 400


def test_the_event_stream_follows_a_tree_until_it_ends(client, workers):
    message = stepper.send(steps=4, step_s=0.2)
    progress = []
    with client.stream("GET", f"/api/jobs/{message.message_id}/events", headers=bearer("viewer")) as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "tree":
                progress.append(json.loads(line[6:])["progress"])
    assert progress[-1] == 1.0 and len(set(progress)) >= 3  # it moved, in steps, to the end


def test_a_viewer_reads_but_cannot_act(client, workers):
    message = stepper.send(steps=10, step_s=0.2)
    assert client.get(f"/api/jobs/{message.message_id}", headers=bearer("viewer")).status_code == 200
    refused = client.post(f"/api/jobs/{message.message_id}/cancel", headers=bearer("viewer"))
    assert refused.status_code == 403
    assert client.post("/api/jobs", headers=bearer("viewer"), json={"actor": "stepper", "payload": {"steps": 1}}).status_code == 403
    assert client.post("/api/dead-letters/high_priority/purge", headers=bearer("viewer")).status_code == 403
    # The operator's cancel stops it.
    assert client.post(f"/api/jobs/{message.message_id}/cancel", headers=bearer("operator")).status_code == 200
    assert wait_for_job(message.message_id, timeout_s=30).state == "cancelled"
    assert client.post(f"/api/jobs/{message.message_id}/cancel", headers=bearer("operator")).status_code == 409


def test_a_signed_in_state_change_needs_the_sessions_csrf_token(client, workers):
    csrf = sign_in(client, "otto")
    message = stepper.send(steps=10, step_s=0.2)
    url = f"/api/jobs/{message.message_id}/cancel"
    assert client.post(url).status_code == 403
    assert client.post(url, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post(f"/jobs/{message.message_id}/cancel", data={"csrf_token": "forged"}).status_code == 403
    assert get_job(message.message_id).cancel_requested is False
    assert client.post(url, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert wait_for_job(message.message_id, timeout_s=30).state == "cancelled"
    # The sign-in form itself refuses a post without the token.
    client.cookies.clear()
    assert client.post("/login", data={"username": "otto", "password": "operator-pass"}).status_code == 403


def test_an_operator_retries_a_dead_letter(client, workers, redis_client):
    message = flaky.send(key=f"test:{uuid.uuid4().hex}", failures=4)
    assert wait_for_job(message.message_id, timeout_s=60).state == "failed"
    wait_until(lambda: any(d.message_id == message.message_id for d in list_dead_letters(redis_client, "high_priority")),
               what="the dead letter")
    letters = client.get("/api/dead-letters", headers=bearer("viewer"), params={"queue": "high_priority"}).json()
    [letter] = [d for d in letters["dead_letters"] if d["message_id"] == message.message_id]
    assert "transient failure" in letter["reason"] and letter["traceback"] == ""  # tracebacks: operators only
    # An operator's job page shows the traceback Dramatiq kept.
    sign_in(client, "otto")
    page = client.get(f"/jobs/{message.message_id}")
    assert 'id="traceback"' in page.text and "TransientError" in page.text
    retried = client.post("/api/dead-letters/high_priority/retry", headers=bearer("operator"),
                          json={"message_ids": [message.message_id]})
    assert retried.json()["requeued"] == [message.message_id]
    # Its fifth attempt succeeds (four failures were asked for).
    assert wait_for_job(message.message_id, timeout_s=60).state == "succeeded"
    assert client.post("/api/dead-letters/no_queue/retry", headers=bearer("operator")).status_code == 404


def test_an_artifact_outside_the_artifact_root_is_refused(client, dashboard_settings):
    root = dashboard_settings.artifact_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "plot.png").write_bytes(b"\x89PNG")
    publish(root / "plot.png", settings=dashboard_settings)  # in place for a folder store, uploaded to an object store
    assert client.get("/api/artifacts/plot.png", headers=bearer("viewer")).content == b"\x89PNG"
    for path in ("/api/artifacts//etc/passwd", "/api/artifacts/%2e%2e/%2e%2e/etc/passwd", "/api/artifacts/missing.png"):
        assert client.get(path, headers=bearer("viewer")).status_code == 404, path


def test_pages_render_for_a_signed_in_viewer_without_actions(client, workers):
    sign_in(client, "vera")
    message = stepper.send(steps=10, step_s=0.2)
    page = client.get(f"/jobs/{message.message_id}")
    assert page.status_code == 200 and message.message_id in page.text and "<progress" in page.text
    assert 'id="cancel"' not in page.text
    overview = client.get("/")
    assert 'data-queue="cpu_processing"' in overview.text
    assert client.get("/send").status_code == 403
    assert client.get("/jobs", params={"state": "running"}).status_code == 200
    wait_for_job(message.message_id, timeout_s=30)


def test_record_pages_show_the_curve_confusion_matrix_example_signals_and_deployment(client, workers, database):
    # Given a tiny dataset, a model trained on it and its error analysis, all sent through the API,
    make_dataset(database, "ds-web")
    training = {"experiment_id": "exp-web", "dataset_id": "ds-web", "model_key": "cnn1d",
                "model_args": {"width": 8, "depth": 2},
                "training": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0,
                             "augment_noise": 0.1}}
    for actor, payload in (("train_model", training), ("error_analysis", {"experiment_id": "exp-web"})):
        sent = client.post("/api/jobs", headers=bearer("operator"), json={"actor": actor, "payload": payload})
        assert sent.status_code == 202, sent.text
        assert wait_for_job(sent.json()["message_id"], timeout_s=240).state == "succeeded"
    # when a viewer opens the experiment's page,
    sign_in(client, "vera")
    page = client.get("/records/experiments/exp-web")
    # then it shows the curve per epoch, the test metrics and the confusion matrix the analysis drew.
    assert page.status_code == 200 and 'id="training-curve"' in page.text and "test_f1_macro" in page.text
    # and how it trained: on this machine's CPU, in fp32, its data in memory
    run = page.text[page.text.index('id="training-run"'):]
    assert "<td>cpu</td>" in run and "<td>fp32</td>" in run and "in memory" in run
    # with the recipe: the options it set (defaults otherwise) and its model arguments
    assert "<code>lr</code> 0.01" in run and "<code>augment_noise</code> 0.1" in run and "<code>epochs</code> 2" in run
    assert "<code>ema_decay</code>" not in run and '"width": 8' in run
    curve = client.get("/records/experiments/exp-web/curve.png")
    assert curve.headers["content-type"] == "image/png" and curve.content.startswith(b"\x89PNG")
    [confusion] = re.findall(r'src="(/api/artifacts/[^"]*confusion\.png)"', page.text)
    assert client.get(confusion).content.startswith(b"\x89PNG")
    dataset = client.get("/records/datasets/ds-web")
    assert "Class counts" in dataset.text and "train" in dataset.text and 'id="examples"' in dataset.text
    # The dataset's own description: its classes with their display names, rate, channels, windows
    data = dataset.text[dataset.text.index('id="dataset-data"'):]
    assert "<code>sain</code>" in data and "20,480 Hz" in data and "per record" in data
    examples = client.get("/records/datasets/ds-web/examples.png")
    assert examples.headers["content-type"] == "image/png" and examples.content.startswith(b"\x89PNG")
    Path(tempfile.gettempdir(), "pfd-dashboard-examples.png").write_bytes(examples.content)
    # A deployment of the experiment: its stages, variants, recommended variant and benchmark chart.
    quick = {"quantize": {"calibration_windows": 16}, "benchmark": {"batch_sizes": [1, 8], "warmup": 1, "runs": 3}}
    sent = client.post("/api/jobs", headers=bearer("operator"),
                       json={"actor": "deploy_experiment", "payload": {"experiment_id": "exp-web", "options": quick}})
    assert sent.status_code == 202, sent.text
    tree = wait_until(lambda: (t := client.get(f"/api/jobs/{sent.json()['message_id']}").json()["tree"])["state"]
                      in ("succeeded", "failed", "timed_out", "cancelled") and t, timeout=300, what="the deployment")
    assert tree["state"] == "succeeded", tree["first_failure"]
    deployment_id = tree["nodes"][0]["result"]["deployment_id"]
    page = wait_until(lambda: (p := client.get(f"/records/deployments/{deployment_id}").text) and 'id="recommended"' in p
                      and p, timeout=60, what="the deployment's recommended variant")
    assert "Stages" in page and "Variants" in page and re.search(r'src="/api/artifacts/[^"]+\.png"', page)


def test_notification_links_lead_to_the_record_pages(client):
    sign_in(client, "vera")
    for link, page in (("/experiments/exp-1", "/records/experiments/exp-1"), ("/hpo/c-1", "/records/campaigns/c-1"),
                       ("/evaluations/a-1", "/records/analyses/a-1")):
        answer = client.get(link)
        assert answer.status_code == 303 and answer.headers["location"] == page, link
    assert client.get("/static/dashboard.css").status_code == 200


def test_an_operator_stops_and_resumes_a_campaign_a_viewer_cannot(client, workers, database):
    make_dataset(database, "ds-web-hpo")
    campaign_id = f"hpo-web-{uuid.uuid4().hex[:8]}"
    spec = {"model_key": "cnn1d", "model_args": {"width": 8, "depth": 2}, "method": "random", "n_trials": 3,
            "parallelism": 1, "metric": "val_accuracy", "seed": 0,
            "training": {"epochs": 2, "batch_size": 4, "scheduler": "none", "seed": 0},
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}}
    sent = client.post("/api/jobs", headers=bearer("operator"), json={
        "actor": "run_hpo_campaign", "payload": {"campaign_id": campaign_id, "dataset_id": "ds-web-hpo", "spec": spec}})
    assert sent.status_code == 202, sent.text

    def campaign() -> dict:
        answer = client.get(f"/api/records/campaigns/{campaign_id}", headers=bearer("viewer"))
        return answer.json()["record"] if answer.status_code == 200 else {}

    wait_until(lambda: campaign().get("trials_done", 0) >= 1, timeout=180, what="a first finished trial")
    assert client.post(f"/api/campaigns/{campaign_id}/stop", headers=bearer("viewer")).status_code == 403
    stop = client.post(f"/api/campaigns/{campaign_id}/stop", headers=bearer("operator"))
    assert stop.status_code == 202, stop.text
    wait_until(lambda: campaign().get("status") == "cancelled", timeout=90, what="the campaign to stop")
    resume = client.post(f"/api/campaigns/{campaign_id}/resume", headers=bearer("operator"))
    assert resume.status_code == 202, resume.text
    done = wait_until(lambda: (c := campaign()).get("status") == "completed" and c, timeout=240,
                      what="the resumed campaign to complete")
    assert done["trials_done"] == 3
    assert client.post("/api/campaigns/no-such/stop", headers=bearer("operator")).status_code == 404
    sign_in(client, "otto")
    assert 'id="resume-campaign"' in client.get(f"/records/campaigns/{campaign_id}").text
    best = client.get(f"/records/campaigns/{campaign_id}/best.png")
    assert best.headers["content-type"] == "image/png" and best.content.startswith(b"\x89PNG")
    Path(tempfile.gettempdir(), "pfd-dashboard-best-value.png").write_bytes(best.content)


def test_a_progress_report_reaches_the_event_stream_within_a_second(client, workers):
    # The stepper reports step k at about started + k * step_s (sleeping overruns only make
    # the real report later, so the latency measured here is an upper bound).
    steps, step_s = 10, 0.3
    message = stepper.send(steps=steps, step_s=step_s)
    latencies = []
    with client.stream("GET", f"/api/jobs/{message.message_id}/events", headers=bearer("viewer")) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            data = json.loads(line[6:])
            node = next((n for n in data.get("nodes", []) if n["message_id"] == message.message_id), None)
            if node and node["started_at"] and 0 < node["progress"] < 1:
                reported_at = node["started_at"] + round(node["progress"] * steps) * step_s
                latencies.append(time.time() - reported_at)
    print(f"progress to event stream: max {max(latencies):.3f} s over {len(latencies)} updates")
    assert len(latencies) >= 5 and max(latencies) < 1.0, latencies


def test_a_jobs_page_shows_its_log_lines_from_the_configured_files(app, workers, dashboard_settings):
    from fastapi.testclient import TestClient

    from actors.web import create_app

    settings = dashboard_settings.model_copy(update={"dashboard_log_files": (workers.log_path("cpu_processing"),)})
    message = stepper.send(steps=2, step_s=0.05)
    assert wait_for_job(message.message_id, timeout_s=30).state == "succeeded"
    with TestClient(create_app(settings, app.broker), follow_redirects=False) as own:
        sign_in(own, "vera")
        page = wait_until(lambda: (p := own.get(f"/jobs/{message.message_id}").text) and "job.finished" in p and p,
                          what="the job's log lines on its page")
    assert 'id="log-lines"' in page and "job.started" in page
