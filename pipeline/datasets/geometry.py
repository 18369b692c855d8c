"""What a dataset is made of: its classes, sampling rate, channels, record and window lengths.

Every dataset file carries these in its root attributes, so training, evaluation, XAI and
deployment follow the dataset rather than the generator's fixed facts. Files written before
the attributes existed (the generator's 11 classes, one channel, 1 s windows without overlap)
read back with those defaults, so they keep working unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.domain import CLASS_KEYS, DISPLAY_NAMES, FS, RECORD_LENGTH, WINDOW_LENGTH
from pipeline.errors import InvalidInput
from pipeline.signals.normalize import check_rule, dataset_normalization

__all__ = ["GENERATOR_GEOMETRY", "MIN_WINDOW", "DatasetGeometry", "check_fits_model",
           "check_same_classes", "window_samples"]

MIN_WINDOW = 512  # below this no model here has a receptive field worth the name
_KEY_MAX = 64


@dataclass(frozen=True)
class DatasetGeometry:
    """A dataset's classes and shapes; windows are cut from records every ``window_hop`` samples."""

    class_keys: tuple[str, ...]
    sampling_rate: float
    record_length: int
    window_length: int
    window_hop: int = 0  # 0: the window length (no overlap)
    channels: tuple[str, ...] = ("signal",)
    display_names: Mapping[str, str] = field(default_factory=dict)
    normalization: str = "none"  # the z-score rule the signals were written under

    def __post_init__(self) -> None:
        keys = tuple(self.class_keys)
        if len(keys) < 2 or len(set(keys)) != len(keys):
            raise InvalidInput(f"a dataset needs two or more distinct class keys, got {list(keys)}")
        for key in keys:
            if not isinstance(key, str) or not key or len(key) > _KEY_MAX or key != key.strip():
                raise InvalidInput(f"class key {key!r} must be a non-empty string of at most "
                                   f"{_KEY_MAX} characters without surrounding spaces")
        if not self.channels or len(set(self.channels)) != len(self.channels):
            raise InvalidInput(f"channels must be distinct names, got {list(self.channels)}")
        if not self.sampling_rate > 0:
            raise InvalidInput(f"sampling rate must be positive, got {self.sampling_rate}")
        hop = self.window_hop or self.window_length
        if not MIN_WINDOW <= self.window_length <= self.record_length:
            raise InvalidInput(f"window length {self.window_length} must lie between {MIN_WINDOW} "
                               f"samples and the record length {self.record_length}")
        if not 0 < hop <= self.window_length:
            raise InvalidInput(f"window hop {hop} must lie in (0, window length "
                               f"{self.window_length}]: overlap is below 100 %")
        check_rule(self.normalization)
        unknown = set(self.display_names) - set(keys)
        if unknown:
            raise InvalidInput(f"display names for unknown class keys: {sorted(unknown)}")
        object.__setattr__(self, "class_keys", keys)
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "window_hop", hop)
        object.__setattr__(self, "display_names",
                           {k: str(self.display_names.get(k, k)) for k in keys})

    @property
    def num_classes(self) -> int:
        """How many classes the dataset's labels index."""
        return len(self.class_keys)

    @property
    def in_channels(self) -> int:
        """Channels per window (a deep model's input channels)."""
        return len(self.channels)

    @property
    def windows_per_record(self) -> int:
        """Windows cut from one record at this length and hop."""
        return 1 + (self.record_length - self.window_length) // self.window_hop

    def window_starts(self) -> np.ndarray:
        """Start sample of each window within a record."""
        return np.arange(self.windows_per_record, dtype=np.int64) * self.window_hop

    def signal_shape(self) -> tuple[int, ...]:
        """One record's shape in the file: ``(L,)`` for one channel, else ``(C, L)``."""
        if self.in_channels == 1:
            return (self.record_length,)
        return (self.in_channels, self.record_length)

    def to_attrs(self) -> dict[str, Any]:
        """The root attributes that hold this geometry in a dataset file."""
        return {
            "num_classes": self.num_classes,
            "class_keys": json.dumps(list(self.class_keys)),
            "display_names": json.dumps(dict(self.display_names)),
            "sampling_rate": float(self.sampling_rate),
            "record_length": int(self.record_length),
            "window_length": int(self.window_length),
            "window_hop": int(self.window_hop),
            "channels": json.dumps(list(self.channels)),
        }

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary (recorded with models and shown to users)."""
        return {"class_keys": list(self.class_keys), "display_names": dict(self.display_names),
                "sampling_rate": float(self.sampling_rate), "record_length": self.record_length,
                "window_length": self.window_length, "window_hop": self.window_hop,
                "channels": list(self.channels), "normalization": self.normalization}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> DatasetGeometry:
        """Read a geometry from decoded root attributes; older files get the generator's facts."""
        keys = _json(attrs.get("class_keys")) or list(CLASS_KEYS)
        names = _json(attrs.get("display_names"))
        if not names and tuple(keys) == CLASS_KEYS:
            names = DISPLAY_NAMES
        window = int(attrs.get("window_length", WINDOW_LENGTH))
        return cls(
            class_keys=tuple(keys), sampling_rate=float(attrs.get("sampling_rate", FS)),
            record_length=int(attrs.get("record_length", RECORD_LENGTH)),
            window_length=window, window_hop=int(attrs.get("window_hop", window)),
            channels=tuple(_json(attrs.get("channels")) or ("signal",)),
            display_names=names or {}, normalization=dataset_normalization(attrs),
        )

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> DatasetGeometry:
        """The inverse of ``describe`` (a model's recorded geometry)."""
        return cls(class_keys=tuple(described["class_keys"]),
                   sampling_rate=float(described["sampling_rate"]),
                   record_length=int(described["record_length"]),
                   window_length=int(described["window_length"]),
                   window_hop=int(described.get("window_hop", 0)),
                   channels=tuple(described.get("channels") or ("signal",)),
                   display_names=described.get("display_names") or {},
                   normalization=str(described.get("normalization", "none")))


GENERATOR_GEOMETRY = DatasetGeometry(
    class_keys=CLASS_KEYS, sampling_rate=float(FS), record_length=RECORD_LENGTH,
    window_length=WINDOW_LENGTH, display_names=DISPLAY_NAMES,
)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def window_samples(seconds: float | None, samples: int | None, rate: float, what: str) -> int | None:
    """A length given in seconds or in samples, as samples at ``rate`` (None when neither)."""
    if seconds is not None and samples is not None:
        raise InvalidInput(f"give the {what} in seconds or in samples, not both")
    if samples is not None:
        if samples <= 0:
            raise InvalidInput(f"{what} must be a positive number of samples, got {samples}")
        return int(samples)
    if seconds is not None:
        if not seconds > 0:
            raise InvalidInput(f"{what} must be a positive number of seconds, got {seconds}")
        return int(round(seconds * rate))
    return None


def check_same_classes(model_keys: Sequence[str], data_keys: Sequence[str], what: str) -> None:
    """Refuse data whose class set differs from the model's (same keys in the same order).

    Raises:
        InvalidInput: naming both class sets, so the user sees which dataset fits which model.
    """
    if list(model_keys) != list(data_keys):
        raise InvalidInput(
            f"{what} was trained on the classes [{', '.join(model_keys)}] but this data has "
            f"[{', '.join(data_keys)}]: a model only predicts the class set it learned; use a "
            "dataset with the same classes, or train a model on this one")


def check_fits_model(model: DatasetGeometry, data: DatasetGeometry, what: str) -> None:
    """Refuse data a model trained on ``model``'s data cannot take: other classes, channels,
    sampling rate or window length (normalisation is conformed separately).

    Raises:
        InvalidInput: naming what differs and both values.
    """
    check_same_classes(model.class_keys, data.class_keys, what)
    for name, ours, theirs in (("channels", list(model.channels), list(data.channels)),
                               ("sampling rate (Hz)", model.sampling_rate, data.sampling_rate),
                               ("window length (samples)", model.window_length, data.window_length)):
        if ours != theirs:
            raise InvalidInput(f"{what} was trained on data with {name} {ours}, this data has "
                               f"{theirs}: import it with the model's layout")
