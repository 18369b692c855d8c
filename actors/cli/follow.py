"""Follow a piece of work from a terminal: a bar for the whole tree and one per running job."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from actors.cli.display import error_line, result_lines
from actors.platform.jobs import job_store, wait_for_tree
from actors.store.trees import ANNOUNCEMENT_QUEUES, JobTree

__all__ = ["follow_tree", "print_outcome"]

# A job queued this long on a queue that no live worker consumes gets a hint: heartbeats
# come every 2 s, and a worker that is starting (torch and the actors load) beats within
# about 10 s on two cores.
_NO_CONSUMER_AFTER_S = 10.0


def follow_tree(any_id: str, *, label: str, timeout_s: float = 3600.0, console: Console | None = None) -> JobTree:
    """Show live bars until every job of the tree that ``any_id`` names is final; return the tree."""
    console = console or Console()
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[state]} {task.fields[status]}"),
    )
    started = time.monotonic()
    hinted: set[str] = set()
    with Progress(*columns, console=console, transient=False) as bars:
        overall = bars.add_task(label, total=1.0, state="queued", status="")
        node_bars: dict[str, TaskID] = {}

        def update(tree: JobTree) -> None:
            bars.update(overall, completed=tree.progress, state=tree.state,
                        status=" ".join(f"{n} {s}" for s, n in sorted(tree.counts.items())))
            for node in tree.nodes:
                running = node.state in ("running", "retrying")
                if node.message_id not in node_bars and running and node.message_id != tree.root_id:
                    node_bars[node.message_id] = bars.add_task(f"  {node.actor}", total=1.0, state="", status="")
                if node.message_id in node_bars:
                    bars.update(node_bars[node.message_id], completed=node.progress, state=node.state,
                                status=node.status[:50], visible=running)
            if time.monotonic() - started >= _NO_CONSUMER_AFTER_S:
                _hint_unconsumed(tree, hinted, bars.console)

        return wait_for_tree(any_id, timeout_s=timeout_s, on_update=update)


def _hint_unconsumed(tree: JobTree, hinted: set[str], console: Console) -> None:
    """Say once per queue when jobs wait on a queue that no live worker consumes."""
    waiting = {node.queue for node in tree.nodes if node.state == "queued"} - hinted
    if not waiting:
        return
    consumed = job_store().live_workers()
    for queue in sorted(waiting):
        if not consumed.get(queue):
            hinted.add(queue)
            console.print(f"[yellow]no live worker consumes queue {queue!r}: its jobs wait until one starts "
                          f"(`pfd workers`, or the Procfile line {queue!r})")


def print_outcome(tree: JobTree, console: Console) -> None:
    """End a follow: the first failure's error, or the results that matter (root's, then the last job's)."""
    if tree.first_failure is not None:
        failure = tree.first_failure
        # Soft-wrapped: the id and the message stay whole on one line, to paste or grep.
        console.print(f"[red]{tree.state}: {failure.actor} {failure.message_id} failed: {error_line(failure)}",
                      soft_wrap=True)
        return
    if tree.state != "succeeded":
        console.print(f"[magenta]{tree.state}")
        return
    root = tree.root
    for line in result_lines(root.result or {}):
        console.print(line, highlight=False, soft_wrap=True)
    finished = [n for n in tree.nodes if n.message_id != root.message_id and n.result and n.finished_at
                and n.queue not in ANNOUNCEMENT_QUEUES]
    if finished:
        last = max(finished, key=lambda n: n.finished_at or 0.0)
        console.print(f"[bold]{last.actor}[/bold] (last to finish):")
        for line in result_lines(last.result, indent="  "):
            console.print(line, highlight=False, soft_wrap=True)
