"""Real SMTP and HTTP servers on loopback that record what they receive."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.servers import free_port


@dataclass
class Mail:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: Any

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return self.message.get_content().replace("\r\n", "\n")


class MailSink:
    """An aiosmtpd handler that keeps every message and refuses some recipients."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        # Recipients named "refuse@" or "later@" get a permanent or a temporary refusal.
        if address.startswith("refuse@"):
            return "550 5.1.1 no such user"
        if address.startswith("later@"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"

    def for_event(self, event_id: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.mails if m.message["X-PFD-Event-Id"] == event_id]


def start_smtp(**kwargs: Any) -> tuple[Controller, MailSink]:
    """Start an SMTP server on a free loopback port; ``kwargs`` go to aiosmtpd's SMTP."""
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller, sink


@dataclass
class Hook:
    """One request the webhook server received."""

    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A request header, whatever the case of its name."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class HookServer:
    """A webhook receiver: answers each event id with its scripted statuses, then 200."""

    server: ThreadingHTTPServer
    received: list[Hook] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/pfd"

    def script(self, event_id: str, *statuses: int) -> None:
        with self.lock:
            self.scripts[event_id] = list(statuses)

    def for_event(self, event_id: str) -> list[Hook]:
        with self.lock:
            return [h for h in self.received if h.header("X-PFD-Delivery") == event_id]

    def answer(self, hook: Hook) -> int:
        with self.lock:
            self.received.append(hook)
            queued = self.scripts.get(hook.header("X-PFD-Delivery") or "", [])
            return queued.pop(0) if queued else 200


def start_webhook() -> HookServer:
    """Start the webhook receiver on a free loopback port, in a thread."""
    holder: dict[str, HookServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hooks = holder["hooks"]
            status = hooks.answer(Hook(dict(self.headers.items()), body))
            if hooks.delay_s:
                time.sleep(hooks.delay_s)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["hooks"] = HookServer(server)
    threading.Thread(target=server.serve_forever, name="webhook-server", daemon=True).start()
    return holder["hooks"]
