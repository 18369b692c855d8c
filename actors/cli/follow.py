"""Follow a job from a terminal with a live progress bar fed by its job record."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from actors.platform.jobs import wait_for_job
from actors.store.jobs import JobView

__all__ = ["follow_job"]


def follow_job(message_id: str, *, label: str, timeout_s: float = 3600.0, console: Console | None = None) -> JobView:
    """Show a progress bar until the job is final; return its final view."""
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[state]} {task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=1.0, state="queued", status="")

        def update(view: JobView) -> None:
            bar.update(task, completed=view.progress, state=view.state, status=view.status[:60])

        return wait_for_job(message_id, timeout_s=timeout_s, poll_s=0.2, on_update=update)
