"""Signed messages: a worker runs what a key holder sent and refuses, unread, anything else.

The unit tests check the encoder (round trip, alteration, unknown keys, rotation); the last
test starts a real worker with keys against a redis-server of its own, sends through a
producer process, and forges bodies straight into Redis as an intruder with write access
would.
"""

from __future__ import annotations

import json
import uuid

import dramatiq
import pytest
from dramatiq.encoder import JSONEncoder
from dramatiq.errors import DecodeError
from dramatiq.message import Message
from pydantic import ValidationError

from actors.platform.broker.signing import SignatureRefused, SigningEncoder, key_id
from actors.platform.dead_letters import list_dead_letters
from actors.store.db import get_database
from actors.store.jobs import JobStore
from config.settings import Settings
from tests.servers import RedisServer, push_raw, send_messages
from tests.waiting import wait_until
from tests.workers import Workers, message_refusals

NEW = "6f1c2e0a9b8d47f3a5c1e2d3b4a59687" "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
OLD = "0123456789abcdef0123456789abcdef" "fedcba9876543210fedcba9876543210"


def _message(key: str = "k", **options) -> Message:  # type: ignore[no-untyped-def]
    return Message(queue_name="cpu_processing", actor_name="durable_work", args=(),
                   kwargs={"key": key, "seconds": 0}, options=options)


def _refusal(encoder: SigningEncoder, body: bytes) -> str:
    with pytest.raises(DecodeError) as refused:
        encoder.decode(body)
    assert isinstance(refused.value.error, SignatureRefused)
    return str(refused.value.error)


def test_a_signed_body_reads_back_and_any_change_is_refused():
    encoder = SigningEncoder([NEW.encode()])
    message = _message()
    body = encoder.encode(message.asdict())
    assert encoder.decode(body) == json.loads(JSONEncoder().encode(message.asdict()))
    # The key never travels: only its fingerprint does
    assert NEW.encode() not in body and key_id(NEW.encode()).encode() in body
    assert "altered" in _refusal(encoder, body.replace(b'"seconds":0', b'"seconds":9'))
    assert "unsigned" in _refusal(encoder, JSONEncoder().encode(message.asdict()))
    assert "does not hold" in _refusal(encoder, SigningEncoder([OLD.encode()]).encode(message.asdict()))
    # A forged signature under the right key id, over a body of the intruder's choosing
    head, signature, rest = body.split(b".", 3)[1:]
    assert "altered" in _refusal(encoder, b".".join((b"pfd1", head, b"0" * len(signature), rest)))


def test_keys_rotate_newest_first():
    before = SigningEncoder([OLD.encode()])
    during = SigningEncoder([NEW.encode(), OLD.encode()])
    message = _message().asdict()
    # A process that already holds the new key reads what old-key producers still send...
    assert during.decode(before.encode(message))["kwargs"] == message["kwargs"]
    # ...and signs with the new one, which a process holding only the old key refuses
    assert "does not hold" in _refusal(before, during.encode(message))


def test_a_short_key_is_refused_by_the_settings():
    with pytest.raises(ValidationError, match="shorter than 32 characters"):
        Settings(message_keys=["too-short"])
    assert Settings(message_keys=[NEW]).message_keys[0].get_secret_value() == NEW
    assert NEW not in repr(Settings(message_keys=[NEW]))


def test_a_worker_runs_signed_messages_and_refuses_forged_ones_unread(app, pg_url, tmp_path):
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    env = {"PFD_REDIS_URL": server.url(), "PFD_MESSAGE_KEYS": json.dumps([NEW, OLD])}
    running = Workers(tmp_path, extra_env=env)
    try:
        running.start("cpu_processing", command=running.cpu_command(threads=1))
        client = server.client()
        store = JobStore(client, get_database(pg_url), cache_ttl_s=3600)
        key = f"test:{uuid.uuid4().hex}"
        # Given a producer still signing with the old key (a rotation under way): it runs
        sent = send_messages([{"actor": "durable_work", "kwargs": {"key": key, "seconds": 0}}],
                             {**env, "PFD_MESSAGE_KEYS": json.dumps([OLD])})
        wait_until(lambda: store.get(sent[0]).state == "succeeded", timeout=60, what="the signed message to run")
        # When an intruder writes bodies into the queue: unsigned, altered after signing,
        # and signed with a key of their own
        genuine = SigningEncoder([NEW.encode()]).encode(_message(key).asdict())
        forged = {
            push_raw(client, "cpu_processing", JSONEncoder().encode(_message(key).asdict())): "unsigned",
            push_raw(client, "cpu_processing", genuine.replace(b'"seconds":0', b'"seconds":1')): "altered",
            push_raw(client, "cpu_processing", SigningEncoder([b"i" * 32]).encode(_message(key).asdict())):
                "does not hold",
        }
        # Then each is dead-lettered unread, with its reason, and none of them ran
        wait_until(lambda: set(forged) <= {r.decode() for r in client.zrange("dramatiq:cpu_processing.XQ", 0, -1)},
                   timeout=60, what="the forged bodies to be dead-lettered")
        reasons = wait_until(lambda: (found := message_refusals(running.log("cpu_processing"))).keys() >= forged.keys()
                             and found, timeout=30, what="the refusals to be logged")
        for redis_id, why in forged.items():
            assert why in reasons[redis_id] and "refused unread" in reasons[redis_id]
        # An operator's listing (a process holding the keys) shows each with its reason
        previous = dramatiq.get_encoder()
        dramatiq.set_encoder(SigningEncoder([NEW.encode(), OLD.encode()]))
        try:
            letters = {letter.redis_id: letter for letter in list_dead_letters(client, "cpu_processing")}
        finally:
            dramatiq.set_encoder(previous)
        assert all(not letters[r].readable and why in letters[r].reason for r, why in forged.items())
        assert {k.decode() for k in client.hkeys(f"{key}:starts")} == {sent[0]}
        # and the worker goes on with signed work
        after = send_messages([{"actor": "durable_work", "kwargs": {"key": key, "seconds": 0}}], env)
        wait_until(lambda: store.get(after[0]).state == "succeeded", timeout=60, what="signed work after the forgeries")
        assert NEW not in running.log("cpu_processing") and OLD not in running.log("cpu_processing")
    finally:
        running.stop_all()
        server.stop()
