"""E-mail over SMTP: plain, STARTTLS or implicit TLS, with optional login and a timeout.

Failures are sorted into the two errors the caller acts on: ``DeliveryTransient`` (a
connection problem, a timeout, a 4xx SMTP reply: try again later) and ``DeliveryRefused``
(a 5xx reply such as a refused recipient or bad credentials: do not retry).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

from pipeline.errors import DeliveryRefused, DeliveryTransient, InvalidInput

__all__ = ["TLS_MODES", "SmtpConfig", "send_email"]

TLS_MODES = ("none", "starttls", "ssl")
_DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to reach the SMTP server; ``port`` 0 picks the TLS mode's usual port."""

    host: str
    sender: str
    port: int = 0
    tls: str = "starttls"
    user: str = ""
    password: str = field(default="", repr=False)
    timeout_s: float = 10.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise InvalidInput(f"SMTP TLS mode must be one of {TLS_MODES}, got {self.tls!r}")
        if not self.host:
            raise InvalidInput("no SMTP host configured")

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        return self.port or _DEFAULT_PORTS[self.tls]


def _tls_context(config: SmtpConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=config.ca_file)


def _connect(config: SmtpConfig) -> smtplib.SMTP:
    port = config.effective_port
    if config.tls == "ssl":
        return smtplib.SMTP_SSL(config.host, port, timeout=config.timeout_s, context=_tls_context(config))
    client = smtplib.SMTP(config.host, port, timeout=config.timeout_s)
    if config.tls == "starttls":
        try:
            client.starttls(context=_tls_context(config))
        except BaseException:
            client.close()
            raise
    return client


def _reply_error(code: int, what: str) -> DeliveryRefused | DeliveryTransient:
    # RFC 5321: 4xx is a temporary failure, 5xx a permanent one.
    return DeliveryTransient(what) if 400 <= code < 500 else DeliveryRefused(what)


def send_email(
    config: SmtpConfig, recipients: Sequence[str], subject: str, body: str, *, headers: Mapping[str, str] | None = None
) -> None:
    """Send one plain-text message to ``recipients``.

    Raises:
        DeliveryTransient: the server could not be reached, timed out, or answered 4xx.
        DeliveryRefused: the server answered 5xx (recipient, sender or login refused), did
            not offer STARTTLS or AUTH when they were asked for, or its certificate failed.
    """
    if not recipients:
        raise DeliveryRefused("no e-mail recipient")
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    where = f"{config.host}:{config.effective_port}"
    try:
        client = _connect(config)
        try:
            if config.user:
                client.login(config.user, config.password)
            refused = client.send_message(message, from_addr=config.sender, to_addrs=list(recipients))
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        error = _reply_error(min(codes), f"SMTP server {where} refused every recipient: {_describe(exc.recipients)}")
        raise error from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryRefused(f"SMTP server {where} does not support what the settings ask for: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise _reply_error(exc.smtp_code, f"SMTP server {where} answered {exc.smtp_code} {reply}") from None
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryRefused(f"SMTP server {where} certificate not trusted: {exc.verify_message}") from None
    except (smtplib.SMTPException, OSError) as exc:
        # Disconnects, refused connections, timeouts, TLS handshakes cut short: may pass.
        raise DeliveryTransient(f"SMTP server {where} unreachable: {type(exc).__name__}: {exc}") from None
    if refused:
        raise DeliveryRefused(f"SMTP server {where} refused some recipients: {_describe(refused)}")


def _describe(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address} ({code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply})"
        for address, (code, reply) in refused.items()
    )
