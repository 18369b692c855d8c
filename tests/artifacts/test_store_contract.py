"""One contract for every artifact store backend (a local folder, SeaweedFS over S3)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from actors.platform.artifacts import ArtifactCorrupt, ArtifactMissing, ArtifactStore
from pipeline.errors import InvalidInput


def _file(path: Path, size: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(hashlib.sha256(str(seed).encode()).digest() * (size // 32) + b"x" * (size % 32))
    return path


def test_what_is_put_is_fetched_byte_for_byte_with_its_size_and_checksum(store: ArtifactStore, tmp_path: Path):
    source = _file(tmp_path / "in" / "best.pt", 3 * 1024 * 1024 + 17)
    stored = store.put("experiments/exp-1/best.pt", source)
    assert (stored.key, stored.size) == ("experiments/exp-1/best.pt", source.stat().st_size)
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert store.stat("experiments/exp-1/best.pt") == stored
    fetched = store.fetch("experiments/exp-1/best.pt")
    assert fetched.read_bytes() == source.read_bytes()
    assert store.fetch("experiments/exp-1/best.pt", sha256=stored.sha256).read_bytes() == source.read_bytes()


def test_a_put_replaces_the_object_under_its_key(store: ArtifactStore, tmp_path: Path):
    store.put("reports/r.json", _file(tmp_path / "a.json", 100, seed=1))
    second = store.put("reports/r.json", _file(tmp_path / "b.json", 50, seed=2))
    assert store.stat("reports/r.json") == second
    assert store.fetch("reports/r.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_an_object_is_never_seen_half_written(store: ArtifactStore, tmp_path: Path):
    big = _file(tmp_path / "dataset.h5", 24 * 1024 * 1024, seed=3)
    small = store.put("datasets/ds/data.h5", _file(tmp_path / "old.h5", 1024, seed=4))
    whole = hashlib.sha256(big.read_bytes()).hexdigest()
    seen: list[tuple[int, str]] = []
    writer = threading.Thread(target=store.put, args=("datasets/ds/data.h5", big))
    writer.start()
    while writer.is_alive():
        found = store.stat("datasets/ds/data.h5")
        seen.append((found.size, found.sha256))
    writer.join()
    # Every look found either the old object or the new one, whole: never a part of it.
    assert set(seen) <= {(small.size, small.sha256), (big.stat().st_size, whole)} and seen
    assert store.stat("datasets/ds/data.h5").sha256 == whole


def test_a_missing_object_is_a_clear_error(store: ArtifactStore):
    with pytest.raises(ArtifactMissing, match="no artifact 'experiments/none/best.pt'"):
        store.fetch("experiments/none/best.pt")
    with pytest.raises(ArtifactMissing):
        store.stat("experiments/none/best.pt")


def test_an_object_that_does_not_match_its_recorded_checksum_is_refused(store: ArtifactStore, tmp_path: Path):
    store.put("onnx/model.onnx", _file(tmp_path / "model.onnx", 4096, seed=5))
    with pytest.raises(ArtifactCorrupt, match="'onnx/model.onnx'.*expected 0{64}"):
        store.fetch("onnx/model.onnx", sha256="0" * 64)


def test_keys_list_a_folder_and_delete_removes_one(store: ArtifactStore, tmp_path: Path):
    for key in ("explanations/e1/a.npz", "explanations/e1/plot.png", "explanations/e10/a.npz", "plots/p.png"):
        store.put(key, _file(tmp_path / "f", 64, seed=len(key)))
    assert store.keys("explanations/e1") == ["explanations/e1/a.npz", "explanations/e1/plot.png"]
    assert store.keys("explanations/e1/") == store.keys("explanations/e1")
    assert len(store.keys()) == 4
    store.delete("explanations/e1/a.npz")
    store.delete("explanations/e1/a.npz")  # deleting what is gone is no error
    assert store.keys("explanations") == ["explanations/e1/plot.png", "explanations/e10/a.npz"]
    with pytest.raises(ArtifactMissing):
        store.fetch("explanations/e1/a.npz")


def test_a_listing_gives_each_object_its_size_and_when_it_was_written(store: ArtifactStore, tmp_path: Path):
    before = time.time()
    store.put("datasets/d1.h5", _file(tmp_path / "a", 100))
    store.put("datasets/d2.h5", _file(tmp_path / "b", 300, seed=1))
    listed = store.listing("datasets")
    assert [(o.key, o.size) for o in listed] == [("datasets/d1.h5", 100), ("datasets/d2.h5", 300)]
    # The store's clock may round to the second (S3's Last-Modified).
    assert all(before - 2 <= o.modified <= time.time() + 2 for o in listed)


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "a/../../b", "a//b", "a/./b", "a\\b", "a b"])
def test_a_key_that_is_not_a_plain_relative_path_is_refused_before_the_store_sees_it(
        store: ArtifactStore, tmp_path: Path, key: str):
    with pytest.raises(InvalidInput, match="is not a relative path"):
        store.put(key, _file(tmp_path / "f", 8))
    assert store.keys() == []


def test_a_put_from_a_source_that_cannot_be_read_stores_nothing(store: ArtifactStore, tmp_path: Path):
    with pytest.raises(OSError):
        store.put("models/m.pt", tmp_path / "not-there.pt")
    assert store.keys() == []
    unreadable = _file(tmp_path / "locked.pt", 10)
    os.chmod(unreadable, 0)
    if os.access(unreadable, os.R_OK):  # root reads it anyway
        return
    with pytest.raises(OSError):
        store.put("models/m.pt", unreadable)
    assert store.keys() == []
