"""The artifact store's backends, each a fixture the contract suite runs against: a local
folder, and a real S3-compatible object store (SeaweedFS, started by the session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.platform.artifacts import ArtifactCache, ArtifactStore, LocalStore, S3Store, open_store
from tests.servers import SeaweedServer


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A SeaweedFS of the session's own, with a bucket ``pfd`` and one S3 identity."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed")).start()
    yield server
    server.stop()


def s3_store(seaweed: SeaweedServer, root: Path, *, prefix: str, cache_bytes: int = 1 << 30,
             secret_key: str | None = None) -> S3Store:
    """A store on ``seaweed`` under ``prefix`` (``secret_key`` instead of the right one), its cache in ``root``."""
    store = open_store(f"s3://{seaweed.bucket}/{prefix}", cache=ArtifactCache(root / "cache", cache_bytes),
                       endpoint_url=seaweed.endpoint, access_key_id=seaweed.access_key,
                       secret_access_key=secret_key or seaweed.secret_key)
    assert isinstance(store, S3Store)
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each backend in turn, empty: a new folder, or a new prefix of the session's bucket."""
    if request.param == "local":
        return LocalStore(tmp_path / "artifacts")
    return s3_store(request.getfixturevalue("seaweed"), tmp_path, prefix=tmp_path.name)
