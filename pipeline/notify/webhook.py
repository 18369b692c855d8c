"""Webhook: an HTTP POST of JSON, optionally signed with HMAC-SHA256, with a timeout.

A receiver checks ``X-PFD-Signature: sha256=<hex>``, the HMAC-SHA256 of the raw request
body under the shared secret, and may drop repeats by ``X-PFD-Delivery`` (the event id).
5xx, 408, 429 and connection errors are ``DeliveryTransient``; any other 4xx (and a
redirect, which a POST must not silently follow) is ``DeliveryRefused``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import DeliveryRefused, DeliveryTransient, InvalidInput

__all__ = ["SIGNATURE_HEADER", "WebhookConfig", "encode_body", "post_webhook", "sign", "verify"]

SIGNATURE_HEADER = "X-PFD-Signature"
_RETRIED_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class WebhookConfig:
    """The receiver's URL, the signing secret (empty: unsigned) and the request timeout."""

    url: str
    secret: str = field(default="", repr=False)
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput("the webhook URL must be an absolute http(s) URL")


def sign(secret: str, body: bytes) -> str:
    """Return the signature header value for ``body``: ``sha256=<hex digest>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Return whether ``signature`` is the signature of ``body`` (constant-time compare)."""
    return hmac.compare_digest(sign(secret, body), signature or "")


def encode_body(document: Mapping[str, Any]) -> bytes:
    """Encode the JSON body exactly once, so the signature covers the bytes sent."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # surfaces as an HTTPError with the 3xx status


def post_webhook(
    config: WebhookConfig, document: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
) -> int:
    """POST ``document`` as JSON; return the 2xx status.

    Raises:
        DeliveryTransient: no connection, a timeout, or a 5xx/408/425/429 answer.
        DeliveryRefused: any other non-2xx answer.
    """
    body = encode_body(document)
    request_headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "pfd-actors", **(headers or {})}
    if config.secret:
        request_headers[SIGNATURE_HEADER] = sign(config.secret, body)
    request = urllib.request.Request(config.url, data=body, headers=request_headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    host = urlsplit(config.url).hostname
    try:
        with opener.open(request, timeout=config.timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
        what = f"webhook at {host} answered {status} {exc.reason}"
        if status >= 500 or status in _RETRIED_STATUSES:
            raise DeliveryTransient(what) from None
        raise DeliveryRefused(what) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise DeliveryTransient(f"webhook at {host} unreachable: {type(reason).__name__}: {reason}") from None
