"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
``pfd dashboard`` process, the Procfile's workers, Redis and PostgreSQL.

``make test`` installs chromium where it is missing. Screenshots go to the system's temp
folder (``pfd-dashboard-*.png``) for a person to look at; they are never committed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.probe_actors import stepper
from tests.servers import free_port
from tests.waiting import wait_until
from tests.web.conftest import PASSWORDS, dashboard_env
from tests.workers import Workers

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(tempfile.gettempdir())

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: `make browser` installs it")


@pytest.fixture(scope="module")
def dashboard_url(workers, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A ``pfd dashboard`` process (as its Procfile line starts it) on a free port."""
    port = free_port()
    process = Workers(tmp_path_factory.mktemp("dashboard-logs"), extra_env=dashboard_env())
    process.start("dashboard", command=f"{process.command('dashboard')} --port {port}")
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/login", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, timeout=60, what="the dashboard to answer")
        yield url
    finally:
        process.stop_all()


@pytest.fixture
def page():  # type: ignore[no-untyped-def]
    """A chromium page (headless; no sandbox, as the tests run as root)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def test_a_viewer_signs_in_and_watches_a_running_jobs_progress_bar_move(dashboard_url, page):
    # Given a viewer who asks for the overview, is sent to sign in, and signs in,
    page.goto(f"{dashboard_url}/")
    assert "/login" in page.url
    page.fill("input[name=username]", "vera")
    page.fill("input[name=password]", PASSWORDS["vera"])
    page.click("button[type=submit]")
    page.wait_for_selector('[data-queue="cpu_processing"]')
    assert page.locator('[data-queue="cpu_processing"] .workers').inner_text() != "none"
    page.screenshot(path=str(SHOTS / "pfd-dashboard-overview.png"), full_page=True)

    # when a job sent from another process runs and the viewer opens its page,
    message = stepper.send(steps=15, step_s=0.2)
    page.goto(f"{dashboard_url}/jobs/{message.message_id}")
    bar = f'[data-job="{message.message_id}"] progress'
    first = page.eval_on_selector(bar, "el => el.value")

    # then its bar moves without a reload, and the page ends showing it succeeded.
    page.wait_for_function(
        "([sel, v]) => { const el = document.querySelector(sel); return el.value > v && el.value < 1; }",
        arg=[bar, first], timeout=10_000)
    # The job's own table follows its row: running, with the status it reports.
    detail = f'[data-job-detail="{message.message_id}"]'
    page.wait_for_function("sel => document.querySelector(sel + ' .state').textContent === 'running'",
                           arg=detail, timeout=10_000)
    assert page.locator(f"{detail} .status").inner_text().startswith("step ")
    page.screenshot(path=str(SHOTS / "pfd-dashboard-job-running.png"), full_page=True)
    assert page.locator("#cancel").count() == 0  # a viewer is offered no cancel
    page.wait_for_function("sel => document.querySelector(sel).value === 1", arg=bar, timeout=15_000)
    page.wait_for_function("() => document.getElementById('tree-state').textContent === 'succeeded'",
                           timeout=15_000)
    page.screenshot(path=str(SHOTS / "pfd-dashboard-job-done.png"), full_page=True)


def test_an_operator_cancels_a_job_sends_training_from_the_form_and_sees_the_experiment_page(dashboard_url, page, database):
    from actors.evaluation import error_analysis
    from actors.platform.jobs import wait_for_job
    from tests.records import make_dataset

    make_dataset(database, "ds-browser")
    # Given an operator signed in, when they send train_model from the form generated from its schema,
    page.goto(f"{dashboard_url}/login")
    page.fill("input[name=username]", "otto")
    page.fill("input[name=password]", PASSWORDS["otto"])
    page.click("button[type=submit]")
    # an operator cancels a running job from its page (after confirming),
    running = stepper.send(steps=15, step_s=0.2)
    page.goto(f"{dashboard_url}/jobs/{running.message_id}")
    page.once("dialog", lambda dialog: dialog.accept())
    # The cancel form posts and lands back on the job's page: wait for that navigation, or the
    # next goto may be cut short by it (the old page's live state can say 'cancelled' first).
    with page.expect_navigation(url=f"**/jobs/{running.message_id}"):
        page.click("#cancel")
    page.wait_for_function("() => document.getElementById('tree-state').textContent === 'cancelled'", timeout=15_000)
    page.goto(f"{dashboard_url}/send?actor=train_model")
    assert page.locator("text=model_key").count() >= 1  # the payload's fields, from the schema
    payload = {"experiment_id": "exp-browser", "dataset_id": "ds-browser", "model_key": "cnn1d",
               "model_args": {"width": 8, "depth": 2},
               "training": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "scheduler": "none", "seed": 0}}
    page.fill("textarea[name=payload]", json.dumps(payload))
    page.click("form[action='/send'][method=post] button")
    # then they land on the job's page, which ends showing it succeeded,
    page.wait_for_url("**/jobs/*")
    page.wait_for_function("() => document.getElementById('tree-state').textContent === 'succeeded'", timeout=240_000)
    analysis = error_analysis.send(experiment_id="exp-browser")
    assert wait_for_job(analysis.message_id, timeout_s=120).state == "succeeded"
    # and the experiment's page shows its training curve and confusion matrix.
    page.goto(f"{dashboard_url}/records/experiments/exp-browser")
    for image in ("#training-curve", "img[src$='confusion.png']"):
        page.wait_for_function("sel => { const img = document.querySelector(sel); return img && img.naturalWidth > 0; }",
                               arg=image, timeout=10_000)
    page.screenshot(path=str(SHOTS / "pfd-dashboard-experiment.png"), full_page=True)
