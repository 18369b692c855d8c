"""``pfd maintenance``: run a periodic maintenance actor by hand."""

from __future__ import annotations

import json

import typer

from actors.cli.common import app, console, load_broker

maintenance_app = typer.Typer(help="Periodic maintenance, by hand.", no_args_is_help=True)
app.add_typer(maintenance_app, name="maintenance")


@maintenance_app.command("run")
def maintenance_run(
    name: str = typer.Argument(..., help="A periodic actor, e.g. reap_stale_jobs."),
    payload: str = typer.Option("{}", "--json", help="The payload as a JSON object (e.g. dry_run)."),
) -> None:
    """Run a periodic maintenance actor now, and wait for its result."""
    from actors.cli.follow import follow_tree, print_outcome

    broker = load_broker()
    periodic = sorted(n for n, a in broker.actors.items() if "periodic" in a.options)
    if name not in periodic:
        console.print(f"[red]{name!r} is not a periodic actor; periodic actors: {', '.join(periodic)}")
        raise typer.Exit(2)
    message = broker.get_actor(name).send(**json.loads(payload))
    tree = follow_tree(message.message_id, label=name, console=console)
    if tree.state == "succeeded":
        typer.echo(json.dumps(tree.root.result, indent=2, default=str))
    else:
        print_outcome(tree, console)
    raise typer.Exit(0 if tree.state == "succeeded" else 1)
