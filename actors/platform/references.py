"""Ids a payload names: typed in the schema, checked at send when the producer can read the database.

A field typed ``DatasetId`` or ``ExperimentId`` names a record that must exist. ``send()``
looks the ids up (one query per kind) and refuses a missing one with ``PayloadInvalid``, so
a doomed job never waits in a queue. A producer that cannot read the database (no SQLite
file, a refused connection, ``PFD_SEND_CHECKS_RECORDS=0``) sends unchecked and the worker
refuses the job as soon as it starts; after a failed read it does not try again for a while,
so an unreachable database costs one attempt, not one per message.
"""

from __future__ import annotations

import functools
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import structlog
from pydantic import BaseModel, StringConstraints

from actors.platform.errors import DatabaseUnavailable, PayloadInvalid, StoreError
from config.settings import get_settings, mask_secrets

__all__ = ["DatasetId", "ExperimentId", "Names", "RecordId", "check_references", "named_records"]

log = structlog.get_logger("pfd.send")

RecordId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# After a failed read, sends go unchecked this long before the next try.
RETRY_READ_AFTER_S = 60.0
_unreadable_until = 0.0


@dataclass(frozen=True)
class Names:
    """Marks a field whose value is the id of an existing record of ``kind`` (shown in its JSON schema)."""

    kind: str

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        """Add ``names: <kind>`` to the field's JSON schema, for ``pfd send --schema`` and the reference."""
        schema = handler(core_schema)
        schema["names"] = self.kind
        return schema


DatasetId = Annotated[RecordId, Names("dataset")]
ExperimentId = Annotated[RecordId, Names("experiment")]


def _kind(annotation: Any) -> str | None:
    """The record kind a (possibly nested: optional, list, annotated) type names, if any."""
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, Names):
            return meta.kind
    for arg in typing.get_args(annotation):
        kind = _kind(arg)
        if kind is not None:
            return kind
    return None


def _holds_model(annotation: Any) -> bool:
    """True when a (possibly nested) type holds a pydantic model, whose fields may name records."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_model(arg) for arg in typing.get_args(annotation))


@functools.cache
def _named_fields(schema: type[BaseModel]) -> dict[str, str | None]:
    """The fields worth walking: name -> the kind they name, or ``None`` for a nested model."""
    fields = {}
    for name, field in schema.model_fields.items():
        marks = [m.kind for m in field.metadata if isinstance(m, Names)]
        kind = marks[0] if marks else _kind(field.annotation)
        if kind is not None or _holds_model(field.annotation):
            fields[name] = kind
    return fields


def named_records(payload: BaseModel, prefix: str = "") -> list[tuple[str, str, str]]:
    """Every ``(field path, kind, id)`` the payload names, nested models and lists included."""
    found: list[tuple[str, str, str]] = []
    for name, kind in _named_fields(type(payload)).items():
        value, path = getattr(payload, name), f"{prefix}{name}"
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for index, item in items:
            where = path if index is None else f"{path}.{index}"
            if isinstance(item, BaseModel):
                found += named_records(item, f"{where}.")
            elif kind is not None and isinstance(item, str):
                found.append((where, kind, item))
    return found


def _readable_database():  # type: ignore[no-untyped-def]
    """The project database, or ``None`` when this producer should not (or cannot) read it."""
    from actors.store.db import get_database

    settings = get_settings()
    if not settings.send_checks_records or time.monotonic() < _unreadable_until:
        return None
    url = settings.database_url
    # Opening a SQLite file that is not there would create an empty one: none here, nothing to read.
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    return get_database(url)


def check_references(actor_name: str, references: list[tuple[str, str, str]]) -> None:
    """Refuse ids that name no record, when the database can be read; else leave it to the worker.

    Raises:
        PayloadInvalid: a named record does not exist; the message names each field and id.
    """
    global _unreadable_until
    if not references:
        return
    database = _readable_database()
    if database is None:
        return
    from actors.store.references import missing_records

    try:
        missing = missing_records(database, [(kind, record_id) for _, kind, record_id in references])
    except (DatabaseUnavailable, StoreError) as exc:
        _unreadable_until = time.monotonic() + RETRY_READ_AFTER_S
        log.warning("send.records_unchecked", actor=actor_name, reason=mask_secrets(str(exc))[:300],
                    retry_after_s=RETRY_READ_AFTER_S)
        return
    problems = [f"{path}: no {kind} with id {record_id!r}" for path, kind, record_id in references
                if (kind, record_id) in missing]
    if problems:
        raise PayloadInvalid(f"invalid payload for {actor_name}: {'; '.join(problems)}")
