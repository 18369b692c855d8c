"""The e-mail and webhook senders against real servers on loopback."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from pipeline.errors import DeliveryRefused, DeliveryTransient, InvalidInput
from pipeline.notify.email import SmtpConfig, send_email
from pipeline.notify.webhook import SIGNATURE_HEADER, WebhookConfig, post_webhook, verify
from tests.notifications.servers import start_smtp
from tests.servers import free_port

SENDER = "pfd@example.test"


def _config(port: int, **overrides) -> SmtpConfig:  # type: ignore[no-untyped-def]
    return SmtpConfig(
        **{"host": "127.0.0.1", "port": port, "tls": "none", "sender": SENDER, "timeout_s": 5, **overrides}
    )


def test_email_reaches_the_server_with_subject_recipients_and_body(smtp):
    controller, sink = smtp
    send_email(
        _config(controller.port),
        ["a@example.test", "b@example.test"],
        "[PFD] Hello",
        "Body line\n",
        headers={"X-PFD-Event-Id": "ev-sender-1"},
    )
    (mail,) = sink.for_event("ev-sender-1")
    assert mail.subject == "[PFD] Hello"
    assert mail.rcpt_tos == ["a@example.test", "b@example.test"]
    assert mail.mail_from == SENDER
    assert mail.body == "Body line\n"


def test_refused_recipient_is_a_permanent_failure_and_a_busy_one_is_transient(smtp):
    port = smtp[0].port
    with pytest.raises(DeliveryRefused, match="550"):
        send_email(_config(port), ["refuse@example.test"], "s", "b")
    with pytest.raises(DeliveryTransient, match="450"):
        send_email(_config(port), ["later@example.test"], "s", "b")
    with pytest.raises(DeliveryRefused, match="refused some recipients: refuse@example.test"):
        send_email(_config(port), ["ok@example.test", "refuse@example.test"], "s", "b")


def test_unreachable_smtp_server_is_transient():
    with pytest.raises(DeliveryTransient, match="unreachable"):
        send_email(_config(free_port()), ["a@example.test"], "s", "b")


def test_starttls_asked_of_a_server_without_it_is_refused(smtp):
    with pytest.raises(DeliveryRefused, match="does not support"):
        send_email(_config(smtp[0].port, tls="starttls"), ["a@example.test"], "s", "b")


def test_bad_tls_mode_or_missing_host_is_invalid_configuration():
    with pytest.raises(InvalidInput):
        _config(25, tls="tls")
    with pytest.raises(InvalidInput):
        _config(25, host="")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS", "ignore:Session.login_data is deprecated")
def test_login_with_right_credentials_sends_and_wrong_ones_are_refused():
    def authenticate(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"pfd", b"s3cret")
        return AuthResult(success=ok, handled=False)  # unhandled: the server answers 535 itself

    controller, sink = start_smtp(authenticator=authenticate, auth_require_tls=False, auth_required=True)
    try:
        send_email(
            _config(controller.port, user="pfd", password="s3cret"),
            ["a@example.test"],
            "s",
            "b",
            headers={"X-PFD-Event-Id": "ev-login"},
        )
        assert len(sink.for_event("ev-login")) == 1
        with pytest.raises(DeliveryRefused, match="535"):
            send_email(_config(controller.port, user="pfd", password="wrong"), ["a@example.test"], "s", "b")
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_tls_modes_send_over_a_verified_connection_and_refuse_an_untrusted_certificate(certificate, mode):
    cert, context = certificate
    options = {"tls_context": context, "require_starttls": True} if mode == "starttls" else {"ssl_context": context}
    controller, sink = start_smtp(**options)
    try:
        send_email(
            _config(controller.port, tls=mode, ca_file=str(cert)),
            ["a@example.test"],
            "s",
            "b",
            headers={"X-PFD-Event-Id": f"ev-{mode}"},
        )
        assert len(sink.for_event(f"ev-{mode}")) == 1
        with pytest.raises(DeliveryRefused, match="certificate not trusted"):
            send_email(_config(controller.port, tls=mode), ["a@example.test"], "s", "b")
    finally:
        controller.stop()


def test_webhook_posts_json_signed_with_the_secret(hooks):
    hooks.script("ev-hook-1")
    status = post_webhook(
        WebhookConfig(hooks.url, secret="k", timeout_s=5),
        {"id": "ev-hook-1", "n": 1},
        headers={"X-PFD-Delivery": "ev-hook-1"},
    )
    assert status == 200
    (hook,) = hooks.for_event("ev-hook-1")
    assert hook.document == {"id": "ev-hook-1", "n": 1}
    assert hook.header("Content-Type").startswith("application/json")
    assert verify("k", hook.body, hook.header(SIGNATURE_HEADER))


def test_webhook_without_a_secret_sends_no_signature(hooks):
    post_webhook(WebhookConfig(hooks.url, timeout_s=5), {"id": "ev-hook-2"}, headers={"X-PFD-Delivery": "ev-hook-2"})
    (hook,) = hooks.for_event("ev-hook-2")
    assert hook.header(SIGNATURE_HEADER) is None


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, DeliveryTransient),
        (503, DeliveryTransient),
        (429, DeliveryTransient),
        (408, DeliveryTransient),
        (400, DeliveryRefused),
        (401, DeliveryRefused),
        (404, DeliveryRefused),
        (307, DeliveryRefused),
    ],
)
def test_webhook_5xx_and_throttling_are_transient_other_4xx_and_redirects_are_refused(hooks, status, error):
    event_id = f"ev-status-{status}"
    hooks.script(event_id, status)
    with pytest.raises(error, match=str(status)):
        post_webhook(WebhookConfig(hooks.url, timeout_s=5), {"id": event_id}, headers={"X-PFD-Delivery": event_id})


def test_webhook_timeout_and_refused_connection_are_transient(hooks):
    hooks.delay_s = 1.0
    try:
        with pytest.raises(DeliveryTransient, match="unreachable"):
            post_webhook(WebhookConfig(hooks.url, timeout_s=0.2), {"id": "slow"}, headers={"X-PFD-Delivery": "slow"})
    finally:
        hooks.delay_s = 0.0
    with pytest.raises(DeliveryTransient, match="unreachable"):
        post_webhook(WebhookConfig(f"http://127.0.0.1:{free_port()}/x", timeout_s=2), {"id": "none"})


def test_webhook_url_must_be_http():
    with pytest.raises(InvalidInput):
        WebhookConfig("file:///etc/passwd")
