"""Prepare a raw recording exactly as a model's training data was prepared.

A deployed model takes windows, not recordings: the recording must be resampled to the
training data's rate, cut into records and windows of its lengths, and normalised by its
rule, as the importer did for the dataset. The exported ONNX file carries that description
(``pfd.data``, see ``pipeline.deploy.export.model_metadata``), so a consumer needs only the
file and this function to get the trained model's predictions from raw samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.datasets.geometry import DatasetGeometry
from pipeline.datasets.hdf5 import cut_windows
from pipeline.datasets.matread import resample
from pipeline.errors import InvalidInput
from pipeline.signals.normalize import normalize_records

__all__ = ["recording_windows"]


def recording_windows(samples: np.ndarray, fs: float,
                      data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The model's input windows of one raw recording, and each window's record index.

    Args:
        samples: ``[n]`` or ``[C, n]`` raw samples, channels in the model's channel order.
        fs: their sampling rate in Hz.
        data: the training data's description (a checkpoint's ``extra["data"]``, or an ONNX
            file's ``pfd.data``).

    Returns:
        Windows ``[m, W]`` (one channel) or ``[m, C, W]``, and record indices ``[m]``.

    Raises:
        InvalidInput: another channel count, a recording shorter than one record, or a
            constant record or recording the normalisation cannot scale.
    """
    geometry = DatasetGeometry.from_description(data)
    raw = np.asarray(samples, dtype=np.float64)
    raw = raw[None] if raw.ndim == 1 else raw
    if raw.ndim != 2 or raw.shape[0] != geometry.in_channels:
        raise InvalidInput(f"the model takes {geometry.in_channels} channel(s) "
                           f"({', '.join(geometry.channels)}), got samples of shape {np.shape(samples)}")
    # float32 before normalising, as the importer stores samples before it normalises them.
    raw = resample(raw, float(fs), geometry.sampling_rate).astype(np.float32)
    length = geometry.record_length
    n = raw.shape[1] // length
    if n == 0:
        raise InvalidInput(f"the recording holds {raw.shape[1]} samples at "
                           f"{geometry.sampling_rate:g} Hz, a record needs {length}")
    records = raw[:, : n * length].reshape(raw.shape[0], n, length).transpose(1, 0, 2)
    records, _ = normalize_records(records, geometry.normalization)
    signals = records[:, 0] if geometry.in_channels == 1 else records
    windows, _, record_ids = cut_windows(signals.astype(np.float32), np.zeros(n, np.int64), geometry)
    return windows, record_ids
