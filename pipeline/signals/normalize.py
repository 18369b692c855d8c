"""Z-score normalisation of imported signals, and making a model's input match its training data.

An imported dataset may be normalised (``normalize`` of the MAT import): ``"file"`` scales each
source file by one mean and standard deviation over all its kept samples, ``"record"`` scales
each 5 s record by its own. The rule is recorded in the dataset file (``generator_config``'s
``normalization``), and a model learns on data normalised that way, so the windows it is later
given must be too: ``conform_windows`` does that for windows read from another dataset.

``"record"`` is self-contained: any raw record can be normalised alone. ``"file"`` is not: its
statistics belong to a whole source file, which a record from elsewhere does not carry, so a
model trained on per-file data only takes data imported with ``normalize="file"`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from pipeline.domain import WINDOWS_PER_RECORD
from pipeline.errors import InvalidInput

__all__ = ["NORMALIZE_RULES", "NormalizeRule", "check_rule", "conform_windows", "dataset_normalization",
           "normalize_records", "zscore"]

NormalizeRule = Literal["none", "file", "record"]
NORMALIZE_RULES: tuple[str, ...] = ("none", "file", "record")
# Below this a signal is flat to float32 precision: dividing by it would only amplify rounding.
_MIN_STD = 1e-12


def check_rule(rule: str) -> str:
    """Return ``rule`` when it is one of ``NORMALIZE_RULES``, else raise InvalidInput."""
    if rule not in NORMALIZE_RULES:
        raise InvalidInput(f"unknown normalisation {rule!r}; valid: {', '.join(NORMALIZE_RULES)}")
    return rule


def zscore(signal: np.ndarray, what: str = "signal") -> tuple[np.ndarray, float, float]:
    """Return ``(float32 (signal - mean) / std, mean, std)``, statistics taken in float64.

    Raises:
        InvalidInput: the signal is constant (std 0) or not finite; ``what`` names it.
    """
    values = np.asarray(signal, dtype=np.float64)
    mean = float(values.mean())
    std = float(values.std())
    if not np.isfinite(mean) or not np.isfinite(std):
        raise InvalidInput(f"{what} holds NaN or infinite samples: it cannot be z-scored")
    if std <= _MIN_STD * max(1.0, abs(mean)):
        raise InvalidInput(f"{what} is constant (std {std:.3g} around {mean:.6g}): it cannot be "
                           "z-scored, and a flat line carries no vibration to learn from")
    return ((values - mean) / std).astype(np.float32), mean, std


def normalize_records(records: np.ndarray, rule: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Records ``[n, C, L]`` of one recording under ``rule`` (each channel apart), and each
    record's statistics.

    ``"file"`` takes one mean and std per channel over every given record (the recording's
    kept samples, so its records end at mean 0 and std 1 exactly, whatever tail was dropped);
    ``"record"`` one per record and channel. One channel keeps scalar ``mean`` and ``std``;
    several give a list of each, by channel.

    Raises:
        InvalidInput: the recording (``"file"``) or one of its records (``"record"``) is constant.
    """
    check_rule(rule)
    n, channels, length = records.shape
    if rule == "none":
        return records.astype(np.float32), [{"rule": "none"}] * n
    if rule == "file":
        out = [zscore(records[:, c], "the signal" if channels == 1 else f"channel {c}")
               for c in range(channels)]
        return np.stack([o[0] for o in out], axis=1), [_stats("file", out)] * n
    per_record = [[zscore(records[k, c], f"record {k} (samples {k * length}-{(k + 1) * length - 1})"
                          + (f", channel {c}" if channels > 1 else ""))
                   for c in range(channels)] for k in range(n)]
    return (np.stack([np.stack([o[0] for o in row]) for row in per_record]),
            [_stats("record", row) for row in per_record])


def _stats(rule: str, out: list[tuple[np.ndarray, float, float]]) -> dict[str, Any]:
    if len(out) == 1:
        return {"rule": rule, "mean": out[0][1], "std": out[0][2]}
    return {"rule": rule, "mean": [o[1] for o in out], "std": [o[2] for o in out]}


def dataset_normalization(attrs: Mapping[str, Any]) -> str:
    """The normalisation rule recorded in a dataset file's root attributes (``"none"`` if none).

    Generated datasets and imports made before the option existed record none: raw signals.
    """
    config = attrs.get("generator_config") or {}
    recorded = config.get("normalization") if isinstance(config, Mapping) else None
    rule = recorded.get("rule", "none") if isinstance(recorded, Mapping) else "none"
    return check_rule(str(rule))


def conform_windows(windows: np.ndarray, *, model_rule: str, data_rule: str,
                    windows_per_record: int = WINDOWS_PER_RECORD) -> np.ndarray:
    """Windows ``[n, L]`` of whole records, normalised the way the model's training data was.

    Data already normalised by the model's rule is returned as it is (never twice). A model
    trained per record gets each record (``windows_per_record`` consecutive windows) z-scored
    over the whole record, whatever the data's own rule: per-record z-scores are the same for
    any scaling of a record, so a per-file-normalised record gives the same input as a raw one.

    Raises:
        InvalidInput: the model was trained per file and the data was not normalised per file
            (those statistics need the source file); the model was trained on raw signals and
            the data is normalised; a record is constant; ``windows`` are not whole records.
    """
    check_rule(model_rule)
    check_rule(data_rule)
    if model_rule == data_rule:
        return windows
    if model_rule == "record":
        if windows.ndim != 2 or windows.shape[0] % windows_per_record:
            raise InvalidInput(f"per-record normalisation needs whole records of {windows_per_record} "
                               f"windows, got shape {windows.shape}")
        records = windows.reshape(-1, windows_per_record * windows.shape[1])
        out = np.stack([zscore(r, f"record {k}")[0] for k, r in enumerate(records)])
        return out.reshape(windows.shape)
    if model_rule == "file":
        raise InvalidInput(f"the model was trained on data normalised per source file, and this data is "
                           f"{_describe(data_rule)}: per-file statistics need the whole file, so import it "
                           "with normalize='file' and use that dataset")
    raise InvalidInput(f"the model was trained on raw signals, and this data is {_describe(data_rule)}: "
                       "use a dataset imported without normalisation")


def _describe(rule: str) -> str:
    return {"none": "not normalised", "file": "normalised per file", "record": "normalised per record"}[rule]
