"""Which records of a split to explain: a few of each class, not the first few.

Splits are stored ordered by class, so "the first n test records" are all one class; a
batch that should show the model's behaviour across faults picks per class instead.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import InvalidInput

__all__ = ["stratified_records"]


def stratified_records(labels: np.ndarray, per_class: int) -> list[int]:
    """Positions of ``per_class`` records of each class in ``labels`` (all of a smaller class),
    spread evenly over that class's records, in class order then position.

    ``per_class=1`` is one record per class (the first of each). Raises ``InvalidInput`` for
    ``per_class < 1`` or no labels.
    """
    y = np.asarray(labels)
    if per_class < 1:
        raise InvalidInput(f"per_class must be at least 1, got {per_class}")
    if y.size == 0:
        raise InvalidInput("the split has no records to pick from")
    picked: list[int] = []
    for label in np.unique(y):
        positions = np.flatnonzero(y == label)
        take = min(per_class, positions.size)
        # Evenly spaced through the class (ends included), so more than one shows its spread.
        spots = np.unique(np.linspace(0, positions.size - 1, take).round().astype(int))
        picked.extend(int(p) for p in positions[spots])
    return picked
