"""Every model's constructor arguments, declared without importing torch or scikit-learn.

A producer checks ``train_model``'s and a campaign's ``model_args`` against this table when it
sends, so a typo is refused there and a producer never loads torch. The table is the
constructors' signatures written out: a test compares it with ``inspect.signature`` of every
constructor, so the two cannot drift.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

from pipeline.domain import NUM_CLASSES

__all__ = ["ARGUMENTS", "Argument", "type_name"]


@dataclass(frozen=True)
class Argument:
    """One constructor argument: its type hint and default (``required``: no default)."""

    hint: Any
    default: Any = None
    required: bool = False


def type_name(hint: Any) -> str:
    """A type hint as a user reads it: ``int``, ``int or null``, ``list``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(type_name(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return "list"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _deep(**arguments: Argument) -> dict[str, Argument]:
    # Every deep model's first arguments: its number of logits, one per class, and the
    # channels of its input windows (both follow the dataset unless given).
    return {"num_classes": Argument(int, NUM_CLASSES), "in_channels": Argument(int, 1), **arguments}


ARGUMENTS: dict[str, dict[str, Argument]] = {
    "cnn1d": _deep(width=Argument(int, 32), depth=Argument(int, 4), kernel_size=Argument(int, 7),
                   dropout=Argument(float, 0.3)),
    "resnet18": _deep(base_width=Argument(int, 64), stem_kernel=Argument(int, 64), stem_stride=Argument(int, 8),
                      dropout=Argument(float, 0.2), pool=Argument(str, "avg")),
    "cnn_lstm": _deep(width=Argument(int, 32), hidden_size=Argument(int, 64), num_layers=Argument(int, 1),
                      bidirectional=Argument(bool, True), dropout=Argument(float, 0.3)),
    "attention_cnn": _deep(width=Argument(int, 32), depth=Argument(int, 3), reduction=Argument(int, 4),
                           dropout=Argument(float, 0.3)),
    "signal_transformer": _deep(patch_size=Argument(int, 256), d_model=Argument(int, 64), nhead=Argument(int, 4),
                                num_layers=Argument(int, 2), dim_feedforward=Argument(int, 128),
                                dropout=Argument(float, 0.1)),
    "nas_net": _deep(stem=Argument(int, required=True), layers=Argument(list[Any], required=True)),
    "rf": {"n_estimators": Argument(int, 300), "max_depth": Argument(int | None, None),
           "min_samples_leaf": Argument(int, 1), "k_features": Argument(int, 15), "random_state": Argument(int, 0),
           "n_jobs": Argument(int, 1)},
    "svm": {"C": Argument(float, 10.0), "kernel": Argument(str, "rbf"), "gamma": Argument(str | float, "scale"),
            "k_features": Argument(int, 15), "calibration_folds": Argument(int, 5)},
    "gbm": {"max_iter": Argument(int, 200), "learning_rate": Argument(float, 0.1), "max_depth": Argument(int | None, None),
            "max_leaf_nodes": Argument(int, 31), "k_features": Argument(int, 15), "random_state": Argument(int, 0)},
}
