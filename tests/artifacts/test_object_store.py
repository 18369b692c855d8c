"""What only the object store backend does: its checksum-keyed, bounded cache, and the
errors of a store that refuses, cannot be reached, or holds damaged bytes (real SeaweedFS)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from actors.platform.artifacts import (
    ArtifactCache,
    ArtifactCorrupt,
    ArtifactStoreRefused,
    LocalStore,
    S3Store,
    open_store,
)
from actors.platform.errors import TransientError
from pipeline.artifacts import file_sha256
from pipeline.errors import InvalidInput
from tests.artifacts.conftest import s3_store
from tests.servers import SeaweedServer, free_port, write_tls_certificates

MB = 1024 * 1024


def _file(path: Path, size: int, seed: int) -> Path:
    path.write_bytes(hashlib.sha256(str(seed).encode()).digest() * (size // 32))
    return path


def test_the_cache_is_keyed_by_checksum_so_a_cached_object_is_not_downloaded_again(seaweed, tmp_path: Path):
    store = s3_store(seaweed, tmp_path, prefix="cache-key")
    stored = store.put("experiments/e/best.pt", _file(tmp_path / "best.pt", MB, seed=1))
    first = store.fetch("experiments/e/best.pt")
    assert first == store.cache.path(stored.sha256, ".pt") and first.read_bytes() == (tmp_path / "best.pt").read_bytes()
    # The same bytes under another key, then gone from the bucket: the record's checksum
    # finds them in the cache; nothing is asked of the store.
    store.put("deployments/d/model.pt", tmp_path / "best.pt")
    seaweed.client().delete_object(Bucket=seaweed.bucket, Key="cache-key/deployments/d/model.pt")
    assert store.fetch("deployments/d/model.pt", sha256=stored.sha256) == first


def test_the_cache_keeps_to_its_bound_dropping_the_least_recently_used(seaweed, tmp_path: Path):
    store = s3_store(seaweed, tmp_path, prefix="cache-bound", cache_bytes=int(2.5 * MB))
    keys = [f"features/f{i}.npz" for i in range(3)]
    sums = [store.put(key, _file(tmp_path / f"f{i}", MB, seed=10 + i)).sha256 for i, key in enumerate(keys)]
    store.fetch(keys[0])
    store.fetch(keys[1])
    store.fetch(keys[0])  # used again: now the most recent
    store.fetch(keys[2])
    assert store.cache.size() <= 2.5 * MB
    assert [store.cache.get(s, ".npz") is not None for s in sums] == [True, False, True]


def test_cleaning_the_cache_drops_abandoned_downloads_and_what_is_past_its_bound(tmp_path: Path):
    import os
    import time

    cache = ArtifactCache(tmp_path / "cache", max_bytes=MB)
    entries = []
    for i in range(3):
        partial = cache.partial()
        partial.write_bytes(bytes(MB // 2))
        entries.append(cache.admit(partial, f"{i:064x}", ".pt"))  # the bound drops the oldest at once
    cache.max_bytes = MB // 2  # a smaller bound since: one entry too many
    abandoned, fresh = cache.partial(), cache.partial()
    old = time.time() - 7200
    os.utime(abandoned, (old, old))
    planned = cache.clean(3600, dry_run=True)
    assert set(planned) == {abandoned, entries[1]} and abandoned.exists() and entries[1].exists()
    assert set(cache.clean(3600)) == set(planned)
    assert not abandoned.exists() and fresh.exists() and entries[2].exists() and not entries[1].exists()


def test_damaged_bytes_in_the_store_are_refused_and_never_cached(seaweed, tmp_path: Path):
    store = s3_store(seaweed, tmp_path, prefix="damaged")
    stored = store.put("datasets/ds/data.h5", _file(tmp_path / "data.h5", MB, seed=2))
    # Bytes changed behind the store's back, the checksum metadata left as it was.
    seaweed.client().put_object(Bucket=seaweed.bucket, Key="damaged/datasets/ds/data.h5", Body=b"x" * 100,
                                Metadata={"sha256": stored.sha256})
    with pytest.raises(ArtifactCorrupt, match=f"expected {stored.sha256}"):
        store.fetch("datasets/ds/data.h5")
    assert store.cache.size() == 0 and not list(store.cache.root.glob("*.part"))


def test_an_object_stored_by_another_tool_has_no_checksum_and_is_refused_clearly(seaweed, tmp_path: Path):
    store = s3_store(seaweed, tmp_path, prefix="foreign")
    seaweed.client().put_object(Bucket=seaweed.bucket, Key="foreign/reports/r.json", Body=b"{}")
    with pytest.raises(ArtifactCorrupt, match="no sha256 metadata"):
        store.fetch("reports/r.json")


def test_wrong_credentials_are_one_clear_refusal_without_the_secret(seaweed, tmp_path: Path):
    store = s3_store(seaweed, tmp_path, prefix="refused", secret_key="not-the-secret-key-42")
    with pytest.raises(ArtifactStoreRefused) as refused:
        store.put("plots/p.png", _file(tmp_path / "p.png", 64, seed=3))
    assert "SignatureDoesNotMatch" in str(refused.value) or "AccessDenied" in str(refused.value)
    assert "not-the-secret-key-42" not in str(refused.value) and seaweed.secret_key not in str(refused.value)
    with pytest.raises(ArtifactStoreRefused):
        store.fetch("plots/p.png")


def test_over_tls_the_store_is_read_with_its_ca_and_refused_clearly_with_another(tmp_path: Path):
    tls = write_tls_certificates(tmp_path / "tls")
    server = SeaweedServer(tmp_path / "seaweed", tls=tls).start()
    try:
        def store(ca: Path) -> S3Store:
            opened = open_store(f"s3://{server.bucket}/tls", cache=ArtifactCache(tmp_path / ca.stem, MB),
                                endpoint_url=server.endpoint, access_key_id=server.access_key,
                                secret_access_key=server.secret_key, ca_file=ca)
            assert isinstance(opened, S3Store) and server.endpoint.startswith("https://")
            return opened

        stored = store(tls["ca"]).put("reports/r.json", _file(tmp_path / "r.json", 100, seed=5))
        assert file_sha256(store(tls["ca"]).fetch("reports/r.json")) == stored.sha256
        with pytest.raises(ArtifactStoreRefused, match="TLS certificate is not trusted"):
            store(tls["other_ca"]).stat("reports/r.json")
    finally:
        server.stop()


def test_no_credentials_anywhere_is_one_clear_refusal(seaweed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = open_store(f"s3://{seaweed.bucket}/anonymous", cache=ArtifactCache(tmp_path / "cache", MB),
                       endpoint_url=seaweed.endpoint)
    with pytest.raises(ArtifactStoreRefused, match="no credentials .*PFD_S3_ACCESS_KEY_ID"):
        store.stat("reports/r.json")


def test_a_store_that_cannot_be_reached_is_a_transient_fault(tmp_path: Path):
    down = SeaweedServer(tmp_path / "never-started")
    down.s3_port = free_port()
    store = S3Store("pfd", "", down.client(), ArtifactCache(tmp_path / "cache", MB), url=down.endpoint)
    with pytest.raises(TransientError, match="cannot be reached"):
        store.stat("experiments/e/best.pt")


def test_the_url_chooses_the_backend_and_the_object_store_keeps_its_prefix(seaweed, tmp_path: Path):
    cache = ArtifactCache(tmp_path / "cache", MB)
    local = open_store(str(tmp_path / "artifacts"), cache=cache)
    assert isinstance(local, LocalStore) and local.root == tmp_path / "artifacts"
    remote = s3_store(seaweed, tmp_path, prefix="under/a/prefix")
    assert seaweed.secret_key not in remote.url and seaweed.endpoint in remote.url
    stored = remote.put("a/b.bin", _file(tmp_path / "b.bin", 1000, seed=4))
    head = seaweed.client().head_object(Bucket=seaweed.bucket, Key="under/a/prefix/a/b.bin")
    assert head["Metadata"] == {"sha256": stored.sha256} and remote.keys() == ["a/b.bin"]
    with pytest.raises(InvalidInput, match="neither a folder nor s3://bucket/prefix"):
        open_store("file:///srv/artifacts", cache=cache)
