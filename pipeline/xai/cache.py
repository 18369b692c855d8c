"""A per-process cache of loaded models, so a batch does not reload its model per signal.

Entries are keyed by the file's identity: resolved path, device and inode, modification
time (ns) and size. Every writer in this project replaces files by rename
(``pipeline.artifacts``), which gives a new inode, so a rewritten checkpoint is a new key
and is loaded again. The SHA-256 is computed once, when a file is loaded (not on every hit:
hashing a ResNet checkpoint costs more than a cache hit should); a caller that passes the
SHA-256 recorded at training time gets ``CheckpointError`` when the file differs from it.

The cache is thread-safe (Dramatiq runs several worker threads per process); a cached
model is shared, so callers must not modify it (``pipeline.xai`` never does).
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artifacts import file_sha256
from pipeline.errors import CheckpointError

__all__ = ["LoadedModel", "ModelCache", "get_model", "model_cache"]


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model: the module (eval mode) or sklearn pipeline, its key and metadata.

    ``model_key`` comes from the checkpoint for deep models, and from the final estimator's
    type for classical ones (``rf``, ``svm``, ``gbm``; ``None`` when unrecognised).
    """

    model: Any
    model_key: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    sha256: str = ""


_CLASSICAL_BY_ESTIMATOR = {
    "RandomForestClassifier": "rf",
    "CalibratedClassifierCV": "svm",
    "SVC": "svm",
    "HistGradientBoostingClassifier": "gbm",
}


def _is_skops(path: Path) -> bool:
    """Skops archives hold ``schema.json`` at their root; torch zips hold ``<name>/data.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "schema.json" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _load(path: Path, sha256: str) -> LoadedModel:
    if _is_skops(path):
        from pipeline.models.classical import load_classical

        model = load_classical(path, sha256)
        final = model.steps[-1][1]
        key = _CLASSICAL_BY_ESTIMATOR.get(type(final).__name__)
        return LoadedModel(model, key, {"model_key": key}, str(path), sha256)
    from pipeline.training.checkpoint import load_checkpoint

    model, meta = load_checkpoint(path)
    return LoadedModel(model, meta["model_key"], meta, str(path), sha256)


class ModelCache:
    """A small LRU of ``LoadedModel`` keyed by file identity."""

    def __init__(self, max_entries: int = 4) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Any, ...], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, path: str | os.PathLike[str], sha256: str | None = None) -> LoadedModel:
        """Return the model in ``path``, loading it only when not cached for this file version.

        Raises:
            CheckpointError: missing or unreadable file, or SHA-256 differing from ``sha256``.
        """
        source = Path(path).resolve()
        try:
            stat = source.stat()
        except OSError as exc:
            raise CheckpointError(f"model file not found: {source}") from exc
        key = (str(source), stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        # One lock around the load too: two threads asking for the same new file load it once.
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                digest = file_sha256(source)
                if sha256 is not None and digest != sha256:
                    raise CheckpointError(
                        f"model file {source} does not match its recorded SHA-256"
                    )
                entry = _load(source, digest)
                self.loads += 1
                # Older versions of the same path can never be asked for again: drop them.
                for old in [k for k in self._entries if k[0] == key[0]]:
                    del self._entries[old]
                self._entries[key] = entry
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
                if sha256 is not None and entry.sha256 != sha256:
                    raise CheckpointError(
                        f"model file {source} does not match its recorded SHA-256"
                    )
            return entry

    def clear(self) -> None:
        """Forget every cached model."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


model_cache = ModelCache()


def get_model(path: str | os.PathLike[str], sha256: str | None = None) -> LoadedModel:
    """Return the (cached) model of a checkpoint (``.pt``) or classical model file (skops)."""
    return model_cache.get(path, sha256)
