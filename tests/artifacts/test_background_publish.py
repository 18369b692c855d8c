"""The background publisher: whole snapshots, the newest one wins, failures reach the loop.

A local store whose uploads wait at a gate the test opens stands for a slow object store:
it records what each upload read, then stores it as the local backend does.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from actors.platform.artifacts import LocalStore, StoredObject
from actors.platform.background_publish import BackgroundPublisher
from actors.platform.errors import TransientError
from tests.waiting import wait_until


class GatedStore(LocalStore):
    """Uploads wait until ``gate`` is set; each records the key and the bytes it read."""

    def __init__(self, root: Path, failure: BaseException | None = None) -> None:
        super().__init__(root)
        self.gate, self.failure, self.uploads = threading.Event(), failure, []

    def _put(self, key: str, source: Path, sha256: str | None) -> StoredObject:
        self.uploads.append((key, source.read_bytes()))
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        if self.failure is not None:
            raise self.failure
        return super()._put(key, source, sha256)


def _epoch(run: Path, epoch: int, best: bool) -> None:
    """Write an epoch's checkpoints as the training loop does: a whole file renamed over the name."""
    for name in ("best.pt", "last.pt") if best else ("last.pt",):
        (run / "next").write_bytes(f"{name} {epoch}".encode())
        os.replace(run / "next", run / name)


def _files(run: Path) -> list[tuple[Path, str]]:
    return [(run / "best.pt", "experiments/e/best.pt"), (run / "last.pt", "experiments/e/last.pt")]


def test_each_upload_is_one_epoch_as_it_was_and_a_waiting_one_gives_way_to_a_newer(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    store = GatedStore(tmp_path / "store")
    with BackgroundPublisher(store, _files(run)) as publisher:
        _epoch(run, 1, best=True)
        publisher.submit()
        wait_until(lambda: store.uploads, what="the first upload to start")
        _epoch(run, 2, best=True)  # renamed over the files the first upload is reading
        publisher.submit()
        _epoch(run, 3, best=False)
        publisher.submit()  # epoch 2 has not started uploading: it is dropped
        store.gate.set()
        publisher.drain()
    assert store.uploads == [("experiments/e/best.pt", b"best.pt 1"), ("experiments/e/last.pt", b"last.pt 1"),
                             ("experiments/e/best.pt", b"best.pt 2"), ("experiments/e/last.pt", b"last.pt 3")]
    assert (store.root / "experiments/e/last.pt").read_bytes() == b"last.pt 3"
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt"]  # no snapshot left behind


def test_a_failed_upload_is_raised_in_the_loop_by_its_next_submit_and_by_drain(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    store = GatedStore(tmp_path / "store", failure=TransientError("object store cannot be reached"))
    store.gate.set()
    with BackgroundPublisher(store, _files(run)) as publisher:
        _epoch(run, 1, best=True)
        publisher.submit()
        with pytest.raises(TransientError, match="cannot be reached"):
            publisher.drain()
        with pytest.raises(TransientError):
            publisher.submit()
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt"]


def test_closing_drops_what_waits_and_lets_the_upload_in_progress_finish(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    store = GatedStore(tmp_path / "store")
    publisher = BackgroundPublisher(store, _files(run))
    _epoch(run, 1, best=True)
    publisher.submit()
    wait_until(lambda: store.uploads, what="the first upload to start")
    _epoch(run, 2, best=True)
    publisher.submit()
    closing = threading.Thread(target=publisher.close)
    closing.start()
    wait_until(lambda: len(list(run.iterdir())) == 4, what="the waiting snapshot's links to be removed")
    store.gate.set()
    closing.join(timeout=60)
    assert not closing.is_alive()
    assert [key for key, _ in store.uploads] == ["experiments/e/best.pt", "experiments/e/last.pt"]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt"]
