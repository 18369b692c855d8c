"""How ``pfd`` shows things to a person: times, states, results, errors and job trees."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Column, Table
from rich.text import Text
from rich.tree import Tree

from actors.store.jobs import JobView
from actors.store.trees import JobTree

__all__ = [
    "STATE_STYLES", "error_line", "human_time", "id_column", "job_summary", "job_table", "record_table", "result_lines", "tree_view",
]

STATE_STYLES = {
    "queued": "dim", "running": "cyan", "retrying": "yellow", "succeeded": "green",
    "failed": "red", "timed_out": "red", "cancelled": "magenta",
}


def _stamp(value: float | datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return _stamp(datetime.fromisoformat(value))
    return datetime.fromtimestamp(value, UTC)


def human_time(value: float | datetime | str | None, *, wide: bool = False) -> str:
    """A time as a person reads it: "3 min ago" (or ISO 8601 in UTC with ``wide``)."""
    stamp = _stamp(value)
    if stamp is None:
        return "-"
    if wide:
        return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
    seconds = time.time() - stamp.timestamp()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def _state(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def id_column(header: str) -> Column:
    """A table column for ids: never wrapped or cut, so an id can be pasted into the next command."""
    return Column(header, no_wrap=True, min_width=36, overflow="ignore")


def error_line(job: JobView) -> str:
    """A job's error as one line: its type and message."""
    return f"{job.error_type or 'error'}: {job.error_message or '(no message)'}"


def result_lines(result: Any, *, indent: str = "") -> list[str]:
    """A job's result as readable ``key: value`` lines (nested dicts indented, long lists cut)."""
    if not isinstance(result, dict):
        return [f"{indent}{json.dumps(result, default=str)}"]
    lines = []
    for key, value in result.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines.extend(result_lines(value, indent=indent + "  "))
        elif isinstance(value, list) and len(value) > 8:
            shown = json.dumps(value[:8], default=str)[:-1]
            lines.append(f"{indent}{key}: {shown}, ... ({len(value)} in all)]")
        else:
            lines.append(f"{indent}{key}: {json.dumps(value, default=str) if not isinstance(value, str) else value}")
    return lines


def _node_label(job: JobView) -> Text:
    label = Text.assemble((job.actor or "?", "bold"), " ", (job.message_id, "dim"), " ", _state(job.state))
    if job.state in ("running", "retrying"):
        label.append(f" {job.progress:.0%}")
    if job.status and job.state not in ("succeeded",):
        label.append(f" {job.status[:60]}", style="italic")
    label.append(f"  {_duration(job.duration_ms)}", style="dim")
    if job.attempts > 1:
        label.append(f"  attempt {job.attempts}", style="yellow")
    if job.deliveries > max(job.attempts, 1):
        label.append(f"  delivered {job.deliveries} times (a worker died holding it)", style="yellow")
    if job.error_type:
        label.append(f"\n{error_line(job)}", style="red")
    return label


def tree_view(tree: JobTree) -> RenderableType:
    """A job tree as nested nodes, with the tree's own state, progress and first failure on top."""
    title = Text.assemble(("tree ", "bold"), (tree.root_id, ""), "  ", _state(tree.state),
                          f"  {tree.progress:.0%}  ", (json.dumps(tree.counts), "dim"))
    if tree.resolved_from != "job":
        title.append(f"\n(resolved from {tree.resolved_from} {tree.subject_id})", style="dim")
    view = Tree(title)
    by_parent: dict[str | None, list[JobView]] = {}
    ids = {node.message_id for node in tree.nodes}
    for node in tree.nodes:
        parent = node.parent_id if node.parent_id in ids and node.message_id != tree.root_id else None
        by_parent.setdefault(parent, []).append(node)

    def add(branch: Tree, parent: str | None) -> None:
        for node in by_parent.get(parent, []):
            add(branch.add(_node_label(node)), node.message_id)

    add(view, None)
    parts: list[RenderableType] = [view]
    if tree.first_failure is not None:
        parts.append(Text(f"first failure: {tree.first_failure.actor} {tree.first_failure.message_id}: "
                          f"{error_line(tree.first_failure)}", style="red"))
    return Group(*parts)


def job_summary(job: JobView, *, wide: bool = False) -> str:
    """One job in words: what, where, when (sent, started, finished), attempts, its error or result."""
    lines = [f"{job.actor} {job.message_id} on {job.queue}: {job.state}"
             + (f" ({job.status})" if job.status and job.state != "succeeded" else ""),
             f"  sent {human_time(job.enqueued_at, wide=wide)}, started {human_time(job.started_at, wide=wide)}, "
             f"finished {human_time(job.finished_at, wide=wide)}, took {_duration(job.duration_ms)}",
             f"  attempts {job.attempts}, deliveries {job.deliveries}, worker {job.worker or '-'}"]
    if job.error_type:
        lines.append(f"  error: {error_line(job)}")
    if job.result:
        lines.append("  result:")
        lines.extend(result_lines(job.result, indent="    "))
    return "\n".join(lines)


def job_table(jobs: list[JobView], *, wide: bool = False) -> Table:
    """Jobs as a table: whole ids, actor, state, when sent, duration (``wide``: queue, progress, error, root)."""
    table = Table(id_column("message id"), "actor", "state", "sent", "duration", box=box.SIMPLE_HEAD)
    if wide:
        for column in ("queue", "progress", "error", "root id"):
            table.add_column(column)
    for job in jobs:
        row = [job.message_id, job.actor, _state(job.state), human_time(job.enqueued_at, wide=wide),
               _duration(job.duration_ms)]
        if wide:
            row += [job.queue, f"{job.progress:.0%}", error_line(job) if job.error_type else "",
                    job.root_id or job.message_id]
        table.add_row(*row)
    return table


def record_table(records: list[dict[str, Any]], columns: tuple[str, ...], *, wide: bool = False) -> Table:
    """Domain records as a table of ``columns`` (full ids, human times)."""
    table = Table(*(id_column(c) if c.endswith("_id") and i == 0 else c for i, c in enumerate(columns)),
                  box=box.SIMPLE_HEAD)
    for record in records:
        cells = []
        for column in columns:
            value = record.get(column)
            if column.endswith("_at"):
                cells.append(human_time(value, wide=wide))
            elif column == "status":
                cells.append(_state(str(value)))
            else:
                cells.append("-" if value is None else str(value))
        table.add_row(*cells)
    return table
