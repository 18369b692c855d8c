"""Ordered, bounded, process-parallel map used by generation and dataset writing.

Workers come from the ``forkserver`` context. ``fork`` is unsafe from a threaded process
such as a Dramatiq worker (a child can inherit a lock another thread held, and hang);
``spawn`` re-imports numpy/scipy in every child. Forkserver children fork from a clean,
single-threaded server that has preloaded this package, so they start almost as fast as
forked ones and are safe from any thread.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from pipeline.errors import InvalidInput

__all__ = ["default_workers", "ordered_map", "resolve_workers"]

T = TypeVar("T")
R = TypeVar("R")

_MP_CONTEXT = "forkserver"
_PRELOAD = ["pipeline.signals.generator", "pipeline.datasets.generate"]
_IN_FLIGHT_PER_WORKER = 2  # keeps every worker busy while bounding memory


def default_workers() -> int:
    """Number of worker processes to use by default: every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    """Return ``workers`` or the default; raises ``InvalidInput`` when below 1."""
    count = default_workers() if workers is None else workers
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidInput(f"workers must be an integer >= 1, got {workers!r}")
    return count


def ordered_map(
    fn: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    workers: int | None = None,
    chunk_size: int = 8,
) -> Generator[R, None, None]:
    """Yield ``fn(chunk)``'s results for consecutive chunks of ``items``, in order.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    With one worker, or a single chunk, it runs in this process: a pool would only add its
    start-up time. At most ``2 × workers`` chunks are in flight, so results never pile up
    faster than the caller consumes them; closing the iterator early cancels the chunks
    not yet started and waits for the running ones.
    """
    workers = resolve_workers(workers)
    chunks = [items[k:k + chunk_size] for k in range(0, len(items), chunk_size)]
    if workers == 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield from fn(chunk)
        return

    context = multiprocessing.get_context(_MP_CONTEXT)
    context.set_forkserver_preload(_PRELOAD)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=context)
    pending: deque[Future[list[R]]] = deque()
    todo = iter(chunks)
    try:
        for chunk in todo:
            pending.append(pool.submit(fn, chunk))
            if len(pending) >= workers * _IN_FLIGHT_PER_WORKER:
                break
        while pending:
            results = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool.submit(fn, following))
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
