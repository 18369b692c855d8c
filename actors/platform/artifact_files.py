"""The process's artifact store, and what actors do with it.

A writer's pipeline writes under the host's ``artifact_root`` (its work folder); ``publish``
then stores each file under its key, the path relative to that root
(``datasets/ds-1.h5``, ``experiments/exp-1/best.pt``), and the record holds the key. A
reader turns a record's key into a local file with ``local_file``: on the default store (the
artifact root itself) that is the very file, on an object store a checked copy in the
cache, whichever host wrote it. Records written before the store hold absolute paths;
``local_file`` reads those as they are, so a single-host install needs no migration.
``restore`` puts back a file another host published (a redelivered job's progress).
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from actors.platform.artifacts import (
    ArtifactCache,
    ArtifactCorrupt,
    ArtifactMissing,
    ArtifactStore,
    open_store,
)
from config import Settings, get_settings
from pipeline.artifacts import atomic_path, file_sha256
from pipeline.errors import InvalidInput

__all__ = ["artifact_key", "artifact_store", "local_file", "publish", "restore", "store_is_artifact_root"]


@functools.lru_cache(maxsize=4)
def _open(url: str, cache_dir: Path, cache_bytes: int, endpoint_url: str, region: str, access_key_id: str,
          secret_access_key: str, ca_file: Path | None) -> ArtifactStore:
    return open_store(url, cache=ArtifactCache(cache_dir, cache_bytes), endpoint_url=endpoint_url, region=region,
                      access_key_id=access_key_id, secret_access_key=secret_access_key, ca_file=ca_file)


def artifact_store(settings: Settings | None = None) -> ArtifactStore:
    """The process-wide store named by the settings (``artifact_url``, else the artifact root)."""
    settings = settings or get_settings()
    return _open(settings.artifact_url or str(settings.artifact_root), settings.artifact_cache_dir,
                 settings.artifact_cache_mb * 2**20, settings.s3_endpoint_url, settings.s3_region,
                 settings.s3_access_key_id, settings.s3_secret_access_key.get_secret_value(), settings.s3_ca_file)


def artifact_key(path: str | os.PathLike[str], settings: Settings | None = None) -> str:
    """The key of a file under the artifact root: its path relative to the root."""
    root = (settings or get_settings()).artifact_root.resolve()
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(root):
        raise InvalidInput(f"{path} is not under the artifact root {root}: it has no artifact key")
    return resolved.relative_to(root).as_posix()


def publish(path: str | os.PathLike[str], sha256: str | None = None, settings: Settings | None = None) -> str:
    """Store the file ``path`` (written under the artifact root) under its key; return the key.

    Call it before the record that names the key is written, so no record names an object
    that is not whole in the store. ``sha256``: the file's checksum where the caller has it.
    """
    key = artifact_key(path, settings)
    artifact_store(settings).put(key, Path(path), sha256)
    return key


def local_file(reference: str | os.PathLike[str], sha256: str | None = None, settings: Settings | None = None) -> Path:
    """A local file holding the artifact a record names: a store key, or an absolute path as
    records written before the store hold. Checked against ``sha256`` when given; raises
    ``ArtifactMissing`` / ``ArtifactCorrupt``."""
    reference = os.fspath(reference)
    if not os.path.isabs(reference):
        return artifact_store(settings).fetch(reference, sha256)
    path = Path(reference)
    if not path.is_file():
        raise ArtifactMissing(f"no artifact file {path}")
    if sha256 is not None and (found := file_sha256(path)) != sha256:
        raise ArtifactCorrupt(f"artifact file {path} has SHA-256 {found}, expected {sha256}")
    return path


def store_is_artifact_root(settings: Settings | None = None) -> bool:
    """Whether the store is the artifact root itself, so a file written there is stored already."""
    return not (settings or get_settings()).artifact_url


def restore(path: str | os.PathLike[str], settings: Settings | None = None) -> bool:
    """Put the stored object of a file under the artifact root in its place, when this host
    lacks the file and the store holds it (a job redelivered to another host picks up where
    its first host's published progress stands); return whether it did."""
    target = Path(path)
    if target.is_file() or store_is_artifact_root(settings):
        return False
    try:
        source = artifact_store(settings).fetch(artifact_key(target, settings))
    except ArtifactMissing:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:
        shutil.copyfile(source, partial)
    return True
