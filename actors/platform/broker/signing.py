"""Signed messages: an HMAC-SHA256 of every body, checked before a worker reads it.

Anyone who can write to Redis can put a message on a queue; the quality actors run code, so a
body forged straight into Redis must never reach an actor. With signing keys configured
(``PFD_MESSAGE_KEYS``), Dramatiq's encoder writes each body as::

    pfd1.<key id>.<hex HMAC-SHA256 of the JSON>.<the JSON>

and reads back only a body whose HMAC matches under the key it names. The key id is a
fingerprint of the key (the first 16 hex digits of its SHA-256), never the key. A body that
is unsigned, altered, or signed by a key this process does not hold fails to decode, so the
consumer dead-letters it unread with the reason (``actors.platform.broker.consumer``): no
middleware, job record or actor ever sees it. The encoder also signs what the results
backend stores, so a forged result is refused as well.

Signing proves a body came from a holder of a key; it does not stop a holder's valid body
from being replayed, which Redis ACLs (who may write) are for.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from dramatiq.encoder import JSONEncoder, MessageData
from dramatiq.errors import DecodeError

__all__ = ["SignatureRefused", "SigningEncoder", "key_id"]

_PREFIX = b"pfd1."


class SignatureRefused(ValueError):
    """A body whose signature is missing or does not match (the reason is the message)."""


def key_id(key: bytes) -> str:
    """The public fingerprint that names ``key`` in a signed body."""
    return hashlib.sha256(key).hexdigest()[:16]


class SigningEncoder(JSONEncoder):
    """JSON bodies signed with the first of ``keys`` and verified against any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a signing encoder needs at least one key")
        self._signing = (key_id(keys[0]).encode(), keys[0])
        self._keys = {key_id(key).encode(): key for key in keys}

    def encode(self, data: MessageData) -> bytes:
        """The JSON body behind its key id and HMAC."""
        body = super().encode(data)
        name, key = self._signing
        return b".".join((_PREFIX + name, hmac.new(key, body, hashlib.sha256).hexdigest().encode(), body))

    def decode(self, data: bytes) -> MessageData:
        """The message of a body whose HMAC matches; DecodeError (its ``error`` a
        ``SignatureRefused`` saying why) for any other."""
        raw = data if isinstance(data, bytes) else str(data).encode()
        try:
            return super().decode(self.verified(raw))
        except SignatureRefused as error:
            raise DecodeError(f"refused message: {error}", data, error) from None

    def verified(self, raw: bytes) -> bytes:
        """The JSON of a signed body, or SignatureRefused."""
        if not raw.startswith(_PREFIX):
            raise SignatureRefused("unsigned message; refused unread")
        head, _, body = raw[len(_PREFIX):].partition(b".")
        signature, _, body = body.partition(b".")
        key = self._keys.get(head)
        if key is None:
            raise SignatureRefused(f"signed with key {head.decode(errors='replace')[:16]!r}, which this "
                                   "process does not hold; refused unread")
        expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(expected, signature):
            raise SignatureRefused("signature does not match the body (altered after signing); refused unread")
        return body
