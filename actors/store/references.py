"""Which of the records a payload names exist: one indexed query per kind of record."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from actors.store.db import Database
from actors.store.experiments import Experiment
from actors.store.models import Dataset

__all__ = ["RECORD_KINDS", "missing_records"]

RECORD_KINDS = {"dataset": Dataset, "experiment": Experiment}


def missing_records(database: Database, wanted: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Return the ``(kind, id)`` pairs of ``wanted`` that have no record.

    Raises:
        DatabaseUnavailable, StoreError: the database cannot be read.
    """
    by_kind: dict[str, set[str]] = {}
    for kind, record_id in wanted:
        by_kind.setdefault(kind, set()).add(record_id)
    missing: set[tuple[str, str]] = set()
    with database.session() as session:
        for kind, ids in by_kind.items():
            model = RECORD_KINDS[kind]
            found = set(session.scalars(select(model.id).where(model.id.in_(ids))))
            missing |= {(kind, record_id) for record_id in ids - found}
    return missing
