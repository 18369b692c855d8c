"""Loopback SMTP and webhook servers, the test database, and a notifications worker pointed at them."""

from __future__ import annotations

import uuid

import pytest

from actors.store.db import Database
from actors.store.notifications import resume_channel
from config.settings import Settings
from tests.notifications import lane
from tests.notifications.servers import start_smtp, start_webhook
from tests.waiting import wait_until
from tests.workers import Workers

DASHBOARD_URL = "https://dashboard.test.example/pfd/"
WEBHOOK_SECRET = "test-webhook-secret"
RECIPIENT = "operator@example.test"
SENDER = "pfd@example.test"


@pytest.fixture(scope="package")
def smtp():  # type: ignore[no-untyped-def]
    """A real SMTP server on loopback; yields (controller, sink)."""
    controller, sink = start_smtp()
    yield controller, sink
    controller.stop()


@pytest.fixture(scope="package")
def hooks():  # type: ignore[no-untyped-def]
    """A real HTTP webhook receiver on loopback."""
    server = start_webhook()
    yield server
    server.server.shutdown()
    server.server.server_close()


def notify_env(smtp_port: int, webhook_url: str) -> dict[str, str]:
    """The ``PFD_*`` variables that point notifications at the loopback servers."""
    return {
        "PFD_DASHBOARD_URL": DASHBOARD_URL,
        "PFD_SMTP_HOST": "127.0.0.1",
        "PFD_SMTP_PORT": str(smtp_port),
        "PFD_SMTP_TLS": "none",
        "PFD_SMTP_FROM": SENDER,
        "PFD_SMTP_TIMEOUT_S": "5",
        "PFD_NOTIFY_EMAIL_TO": RECIPIENT,
        "PFD_WEBHOOK_URL": webhook_url,
        "PFD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PFD_WEBHOOK_TIMEOUT_S": "5",
    }


@pytest.fixture
def settings(smtp, hooks, pg_url) -> Settings:  # type: ignore[no-untyped-def]
    """Settings as the worker gets them, built in this process."""
    variables = notify_env(smtp[0].port, hooks.url)
    fields = {name.removeprefix("PFD_").lower(): value for name, value in variables.items()}
    return Settings(**fields, database_url=pg_url)


@pytest.fixture(scope="package")
def database(pg_url) -> Database:  # type: ignore[no-untyped-def]
    """The test PostgreSQL database, at head."""
    db = Database(pg_url)
    yield db
    db.dispose()


@pytest.fixture(autouse=True)
def healthy_channels(request):  # type: ignore[no-untyped-def]
    """Every test starts with no channel paused (failures elsewhere must not leak in)."""
    if "database" in request.fixturenames:
        db = request.getfixturevalue("database")
        for channel in ("email", "webhook"):
            resume_channel(db, channel)
    yield


@pytest.fixture
def event_id() -> str:
    """A fresh event id."""
    return f"ev-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="package")
def notify_worker(app, smtp, hooks, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The Procfile's notifications worker, on the tests' private queue, with e-mail and webhook on loopback."""
    from actors.platform.jobs import get_job
    from tests.probe_actors import PROBES

    workers = Workers(
        tmp_path_factory.mktemp("notify-logs"), extra_modules=("tests.probe_actors", "tests.notifications.lane"),
        extra_env=notify_env(smtp[0].port, hooks.url),
    )
    command = workers.command("notifications")
    assert "--queues notifications " in command
    workers.start("notifications", command=command.replace("--queues notifications ", f"--queues {lane.QUEUE} "))
    try:
        message = lane.enqueue(PROBES["notifications"].message())
        wait_until(lambda: get_job(message.message_id).state == "succeeded", timeout=60, what="notifications worker")
        yield workers
    finally:
        workers.stop_all()
