"""The artifact store: one small interface over a local folder or an S3-compatible object store.

Artifacts (datasets, checkpoints, feature sets, explanations, plots, ONNX variants, reports)
are named by store keys, relative POSIX paths such as ``experiments/exp-1/best.pt``; a key
never holds a host's path. Both backends keep the same promises, which
``tests/artifacts/test_store_contract.py`` checks on each:

- ``put`` is atomic: an object appears under its key only when complete (a local file is
  written beside its final name and renamed; an S3 PUT or multipart upload becomes visible
  only once it completes), so a record written after ``put`` never names half an object;
- ``fetch`` returns a local file whose SHA-256 is the object's: the local backend's file
  itself, the object store's through a cache keyed by checksum and bounded in size (an
  object already cached is not downloaded again, whatever its key);
- a missing object is ``ArtifactMissing``, one whose bytes do not match its checksum is
  ``ArtifactCorrupt``, a store that refuses the credentials is ``ArtifactStoreRefused`` (none
  retried, none with a secret in its message); a store that cannot be reached is a
  ``TransientError`` (retried).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.platform.errors import StoreError, TransientError
from pipeline.artifacts import atomic_path, file_sha256
from pipeline.errors import InvalidInput

__all__ = [
    "ArtifactCache",
    "ArtifactCorrupt",
    "ArtifactMissing",
    "ArtifactStore",
    "ArtifactStoreRefused",
    "ListedObject",
    "LocalStore",
    "S3Store",
    "StoredObject",
    "checked_key",
    "open_store",
]

_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")


class ArtifactMissing(StoreError, LookupError):
    """Raised when no object is stored under a key."""


class ArtifactCorrupt(StoreError):
    """Raised when an object's bytes do not have the checksum recorded for it."""


class ArtifactStoreRefused(StoreError):
    """Raised when the object store refuses the request (credentials, permissions, bucket)."""


@dataclass(frozen=True)
class StoredObject:
    """An object as the store holds it: its key, size in bytes and SHA-256."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ListedObject:
    """An object as a listing shows it: its key, size in bytes and when it was written (Unix time)."""

    key: str
    size: int
    modified: float


def checked_key(key: str) -> str:
    """``key`` if it is a store key (a relative path of safe names); raises ``InvalidInput``."""
    if not _KEY.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise InvalidInput(f"artifact key {key!r} is not a relative path of letters, digits, '.', '_', '-' and '/'")
    return key


class ArtifactStore(ABC):
    """What every backend offers; keys are checked before any backend sees them."""

    url: str

    def put(self, key: str, source: Path, sha256: str | None = None) -> StoredObject:
        """Store the file ``source`` under ``key`` atomically; return what was stored.
        ``sha256``: the file's checksum where the caller has it already (not computed again)."""
        return self._put(checked_key(key), Path(source), sha256)

    def stat(self, key: str) -> StoredObject:
        """The object under ``key``; raises ``ArtifactMissing``."""
        return self._stat(checked_key(key))

    def fetch(self, key: str, sha256: str | None = None) -> Path:
        """A local file holding the object under ``key``, checked against ``sha256`` (the
        checksum a record holds) or, when none is given, the store's own."""
        return self._fetch(checked_key(key), sha256)

    def delete(self, key: str) -> None:
        """Remove the object under ``key`` (nothing when there is none)."""
        self._delete(checked_key(key))

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (a folder-like key, or empty for all), sorted."""
        return [listed.key for listed in self.listing(prefix)]

    def listing(self, prefix: str = "") -> list[ListedObject]:
        """Every object under ``prefix`` (as ``keys`` takes it) with its size and time written, by key."""
        return sorted(self._listing(checked_key(prefix.rstrip("/")) if prefix else ""), key=lambda o: o.key)

    @abstractmethod
    def _put(self, key: str, source: Path, sha256: str | None) -> StoredObject: ...

    @abstractmethod
    def _stat(self, key: str) -> StoredObject: ...

    @abstractmethod
    def _fetch(self, key: str, sha256: str | None) -> Path: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _listing(self, prefix: str) -> list[ListedObject]: ...


class LocalStore(ArtifactStore):
    """Artifacts as files under one folder (the default: ``artifact_root``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _put(self, key: str, source: Path, sha256: str | None) -> StoredObject:
        target = self.root / key
        if source.resolve() == target.resolve():  # written in place already: it is its own final name
            if not target.is_file():
                raise ArtifactMissing(f"no file {key!r} in {self.url} to store")
            if sha256 is not None:
                return StoredObject(key, target.stat().st_size, sha256)
        else:
            with atomic_path(target) as partial:
                shutil.copyfile(source, partial)
                with open(partial, "rb+") as written:
                    os.fsync(written.fileno())
        return self._stat(key)

    def _stat(self, key: str) -> StoredObject:
        # One open file for the size and the checksum: a put may replace the file meanwhile.
        try:
            with open(self.root / key, "rb") as handle:
                return StoredObject(key, os.fstat(handle.fileno()).st_size,
                                    hashlib.file_digest(handle, "sha256").hexdigest())
        except (FileNotFoundError, IsADirectoryError):
            raise ArtifactMissing(f"no artifact {key!r} in {self.url}") from None

    def _fetch(self, key: str, sha256: str | None) -> Path:
        target = self.root / key
        if not target.is_file():
            raise ArtifactMissing(f"no artifact {key!r} in {self.url}")
        if sha256 is not None and (found := file_sha256(target)) != sha256:
            raise ArtifactCorrupt(f"artifact {key!r} in {self.url} has SHA-256 {found}, expected {sha256}")
        return target

    def _delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def _listing(self, prefix: str) -> list[ListedObject]:
        base = self.root / prefix if prefix else self.root
        # atomic_path's partial files (".<name>...tmp") are not objects yet.
        files = [base] if base.is_file() else [
            p for p in base.rglob("*") if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp"))]
        listed = []
        for path in files:
            try:
                stat = path.stat()
            except FileNotFoundError:  # deleted since the folder was read
                continue
            listed.append(ListedObject(path.relative_to(self.root).as_posix(), stat.st_size, stat.st_mtime))
        return listed


class ArtifactCache:
    """Local copies of stored objects, named by their SHA-256 and kept to ``max_bytes``.

    A fetch touches its entry, so the least recently used go first when an admission takes
    the cache over its bound.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root, self.max_bytes = Path(root), max_bytes

    def path(self, sha256: str, suffix: str = "") -> Path:
        """Where the object with this checksum is (or would be) cached."""
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def get(self, sha256: str, suffix: str = "") -> Path | None:
        """The cached copy, marked as just used; ``None`` when not cached."""
        path = self.path(sha256, suffix)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def admit(self, partial: Path, sha256: str, suffix: str = "") -> Path:
        """Move a downloaded, checked file into the cache; trim it to its bound."""
        path = self.path(sha256, suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, path)
        self.trim(keep=path)
        return path

    def partial(self) -> Path:
        """A new file in the cache's folder for a download under way (never a cache entry)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.root, suffix=".part", delete=False) as handle:
            return Path(handle.name)

    def _over_bound(self, keep: Path | None = None) -> list[Path]:
        """The least recently used entries whose removal brings the cache to ``max_bytes``."""
        entries = sorted(((p.stat().st_mtime, p.stat().st_size, p) for p in self.root.glob("??/*") if p.is_file()),
                         key=lambda entry: entry[0])
        total, over = sum(size for _, size, _ in entries), []
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            if path != keep:
                total -= size
                over.append(path)
        return over

    def trim(self, keep: Path | None = None) -> list[Path]:
        """Delete the least recently used entries until the cache holds ``max_bytes`` at most."""
        deleted = self._over_bound(keep)
        for path in deleted:
            path.unlink(missing_ok=True)
        return deleted

    def clean(self, part_max_age_s: float, *, dry_run: bool = False) -> list[Path]:
        """Entries past the bound, and downloads left more than ``part_max_age_s`` ago (their
        worker died mid-fetch): deleted unless ``dry_run``; returned either way."""
        cutoff = time.time() - part_max_age_s
        doomed = [p for p in self.root.glob("*.part") if p.stat().st_mtime < cutoff] + self._over_bound()
        if not dry_run:
            for path in doomed:
                path.unlink(missing_ok=True)
        return doomed

    def size(self) -> int:
        """Bytes held by the cache's entries."""
        return sum(p.stat().st_size for p in self.root.glob("??/*") if p.is_file())


class S3Store(ArtifactStore):
    """Artifacts as objects of an S3-compatible store (AWS, MinIO, SeaweedFS), under a prefix.

    Each object carries its SHA-256 as metadata (``x-amz-meta-sha256``), so a reader knows
    what to expect before it downloads, and finds it in the cache without downloading.
    """

    def __init__(self, bucket: str, prefix: str, client: Any, cache: ArtifactCache, url: str) -> None:
        self.bucket, self.prefix, self.client, self.cache, self.url = bucket, prefix.strip("/"), client, cache, url

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, key: str, operation: str, **arguments: Any) -> Any:
        """One client call, its failures turned into this module's errors (no secret in them)."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            SSLError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            try:
                return getattr(self.client, operation)(**arguments)
            except S3UploadFailedError as exc:  # upload_file wraps the client's error in its own
                raise exc.__context__ if isinstance(exc.__context__, ClientError | BotoCoreError) else exc from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("404", "NoSuchKey", "NotFound"):
                raise ArtifactMissing(f"no artifact {key!r} in {self.url}") from None
            if status and int(status) >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                raise TransientError(f"object store {self.url} answered {code or status} to {operation}") from None
            raise ArtifactStoreRefused(f"object store {self.url} refused {operation} of {key!r}: {code}") from None
        except SSLError:  # a certificate the CA file does not vouch for: a retry changes nothing
            raise ArtifactStoreRefused(f"object store {self.url}: its TLS certificate is not trusted "
                                       "(check PFD_S3_CA_FILE)") from None
        except (EndpointConnectionError, BotoConnectionError) as exc:
            raise TransientError(f"object store {self.url} cannot be reached: {type(exc).__name__}") from None
        except NoCredentialsError:
            raise ArtifactStoreRefused(f"object store {self.url}: no credentials (set PFD_S3_ACCESS_KEY_ID and "
                                       "PFD_S3_SECRET_ACCESS_KEY, or give boto3 its own)") from None
        except BotoCoreError as exc:
            raise ArtifactStoreRefused(f"object store {self.url}: {type(exc).__name__}") from None

    def _put(self, key: str, source: Path, sha256: str | None) -> StoredObject:
        sha256, size = sha256 or file_sha256(source), source.stat().st_size
        self._call(key, "upload_file", Filename=str(source), Bucket=self.bucket, Key=self._name(key),
                   ExtraArgs={"Metadata": {"sha256": sha256}})
        return StoredObject(key, size, sha256)

    def _stat(self, key: str) -> StoredObject:
        head = self._call(key, "head_object", Bucket=self.bucket, Key=self._name(key))
        sha256 = head.get("Metadata", {}).get("sha256")
        if not sha256:
            raise ArtifactCorrupt(f"artifact {key!r} in {self.url} has no sha256 metadata: not stored by this store")
        return StoredObject(key, int(head["ContentLength"]), sha256)

    def _fetch(self, key: str, sha256: str | None) -> Path:
        expected = sha256 or self._stat(key).sha256
        suffix = Path(key).suffix
        if (cached := self.cache.get(expected, suffix)) is not None:
            return cached
        partial = self.cache.partial()
        try:
            self._call(key, "download_file", Bucket=self.bucket, Key=self._name(key), Filename=str(partial))
            if (found := file_sha256(partial)) != expected:
                raise ArtifactCorrupt(f"artifact {key!r} in {self.url} has SHA-256 {found}, expected {expected}")
            return self.cache.admit(partial, expected, suffix)
        finally:
            partial.unlink(missing_ok=True)

    def _delete(self, key: str) -> None:
        self._call(key, "delete_object", Bucket=self.bucket, Key=self._name(key))

    def _listing(self, prefix: str) -> list[ListedObject]:
        listed, start = self._name(prefix) if prefix else self.prefix, f"{self.prefix}/" if self.prefix else ""
        items, more = [], {}
        while True:
            page = self._call(prefix, "list_objects_v2", Bucket=self.bucket, Prefix=listed, **more)
            items += page.get("Contents", [])
            if not page.get("IsTruncated"):
                break
            more = {"ContinuationToken": page["NextContinuationToken"]}
        # A prefix is a folder: "a/b" lists "a/b" and "a/b/...", never "a/bc".
        return [ListedObject(item["Key"][len(start):], int(item["Size"]), item["LastModified"].timestamp())
                for item in items if not listed or item["Key"] == listed or item["Key"].startswith(f"{listed}/")]


def open_store(url: str, *, cache: ArtifactCache, endpoint_url: str = "", region: str = "us-east-1",
               access_key_id: str = "", secret_access_key: str = "", ca_file: Path | None = None) -> ArtifactStore:
    """The store at ``url``: a local folder (a path), or ``s3://bucket/prefix`` on an S3-compatible
    store at ``endpoint_url`` (empty: AWS), its objects read through ``cache``. Without an access
    key, boto3 finds credentials its own way (environment, profile, instance role)."""
    if not url.startswith("s3://"):
        if "://" in url:
            raise InvalidInput(f"artifact store {url!r} is neither a folder nor s3://bucket/prefix")
        return LocalStore(Path(url))
    import boto3
    from botocore.config import Config

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    credentials = {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
    client = boto3.client(
        "s3", endpoint_url=endpoint_url or None, region_name=region, verify=str(ca_file) if ca_file else None,
        config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}),
        **(credentials if access_key_id else {}))
    return S3Store(bucket, prefix, client, cache, url=f"{url} ({endpoint_url})" if endpoint_url else url)
