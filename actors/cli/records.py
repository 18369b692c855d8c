"""``pfd datasets | experiments | campaigns | deployments | analyses | ...``: list records, show one.

``pfd KIND`` lists, newest first; ``pfd KIND show ID`` shows one record in full, with the
tree of jobs that made it.
"""

from __future__ import annotations

import typer

from actors.cli.common import app, console, emit, load_broker
from actors.store.listings import RECORD_KINDS


def _register(kind: str) -> None:
    """Add the ``pfd KIND`` group: a listing when called alone, and ``show ID``."""
    record_kind = RECORD_KINDS[kind]
    group = typer.Typer(help=f"{record_kind.what.capitalize()} records: list them, or show one.")
    app.add_typer(group, name=kind)

    @group.callback(invoke_without_command=True)
    def listing(
        context: typer.Context,
        status: str | None = typer.Option(None, help="Only records in this status."),
        limit: int = typer.Option(50, min=1, max=10_000, help="Page size."),
        page: int = typer.Option(1, min=1, help="Page number, newest first."),
        wide: bool = typer.Option(False, help="ISO times."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        if context.invoked_subcommand is not None:
            return
        from actors.cli.display import record_table
        from actors.platform.jobs import job_store
        from actors.store.listings import list_records

        load_broker()
        records = list_records(job_store().database, kind, status=status, limit=limit, offset=(page - 1) * limit)
        emit(records, as_json, record_table(records, record_kind.columns, wide=wide))

    listing.__doc__ = f"List {kind}, newest first."

    @group.command("show")
    def show(record_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
        from actors.cli.display import result_lines, tree_view
        from actors.platform.errors import JobNotFound, RecordNotFound
        from actors.platform.jobs import get_tree, job_store
        from actors.store.listings import get_record

        load_broker()
        try:
            record = get_record(job_store().database, kind, record_id)
        except RecordNotFound as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(1) from None
        try:
            tree = get_tree(record_id)
        except JobNotFound:
            tree = None  # a record whose job was recorded before job trees, or has expired
        if as_json:
            emit({"record": record, "tree": tree.to_dict() if tree else None}, True)
            return
        for line in result_lines(record):
            console.print(line, highlight=False)
        if tree is not None:
            console.print(tree_view(tree))

    show.__doc__ = f"Show one {record_kind.what} in full, with the tree of jobs that made it."


for _kind in RECORD_KINDS:
    _register(_kind)
