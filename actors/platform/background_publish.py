"""Publishing files from a thread of their own, so a training loop never waits on the store.

A deep training rewrites ``best.pt`` and ``last.pt`` after every epoch, each by renaming a
whole file over its name. ``BackgroundPublisher.submit`` hard-links the files as they are
at that moment (a link keeps naming the inode it was made from when a newer file is renamed
over the name, so the snapshot stays whole and stays one epoch's), and one thread uploads
the newest snapshot under the files' keys, in the order given. A snapshot still waiting
when a newer one is submitted is dropped: only the newest progress is worth uploading.
``drain`` waits until nothing is waiting or uploading and raises what an upload raised, so
the final model published after it cannot be overwritten by an older upload.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

from actors.platform.artifacts import ArtifactStore

__all__ = ["BackgroundPublisher"]

Snapshot = list[tuple[Path, str]]  # (a link to a file as it was, the key to store it under)


class BackgroundPublisher:
    """Uploads snapshots of ``files`` (path, key) to ``store`` from one thread; use as a context
    manager, or call ``close``."""

    def __init__(self, store: ArtifactStore, files: Sequence[tuple[Path, str]]) -> None:
        self._store, self._files = store, [(Path(path), key) for path, key in files]
        self._changed = threading.Condition()
        self._waiting: Snapshot | None = None
        self._uploading, self._closing = False, False
        self._failure: BaseException | None = None
        self._count = 0
        self._thread = threading.Thread(target=self._run, name="background-publisher", daemon=True)
        self._thread.start()

    def submit(self) -> None:
        """Snapshot the files that exist now and queue them for upload, in place of a snapshot
        still waiting; raises the failure of an earlier upload."""
        self._raise_failure()
        self._count += 1
        snapshot = []
        for path, key in self._files:
            if path.is_file():
                # ".tmp": clean_artifacts deletes one a killed process left behind.
                link = path.with_name(f".{path.name}.{os.getpid()}-{id(self)}-{self._count}.tmp")
                try:
                    os.link(path, link)
                except OSError:  # a filesystem without hard links: a copy is still no upload
                    shutil.copyfile(path, link)
                snapshot.append((link, key))
        with self._changed:
            superseded, self._waiting = self._waiting, snapshot
            self._changed.notify_all()
        _remove(superseded)

    def drain(self) -> None:
        """Wait until every submitted snapshot is uploaded or superseded; raise what failed."""
        with self._changed:
            self._changed.wait_for(lambda: self._waiting is None and not self._uploading)
        self._raise_failure()

    def close(self) -> None:
        """Drop a waiting snapshot, let the upload in progress finish, and stop the thread."""
        with self._changed:
            self._closing = True
            dropped, self._waiting = self._waiting, None
            self._changed.notify_all()
        _remove(dropped)
        self._thread.join()

    def __enter__(self) -> BackgroundPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting is not None or self._closing)
                if self._waiting is None:
                    return
                snapshot, self._waiting, self._uploading = self._waiting, None, True
            failure = None
            try:
                for link, key in snapshot:
                    self._store.put(key, link)
            except BaseException as exc:  # raised in the training thread by its next submit or drain
                failure = exc
            finally:
                _remove(snapshot)
            with self._changed:
                self._uploading = False
                self._failure = self._failure or failure
                self._changed.notify_all()


def _remove(snapshot: Snapshot | None) -> None:
    for link, _ in snapshot or ():
        link.unlink(missing_ok=True)
