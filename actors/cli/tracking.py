"""``pfd mlflow link | promote``: an experiment's (campaign's, deployment's) MLflow link; move a model alias.

Both read ``PFD_MLFLOW_TRACKING_URI`` and talk to the MLflow server directly.
"""

from __future__ import annotations

import typer

from actors.cli.common import app, emit, one_row

__all__ = ["link", "promote"]

group = typer.Typer(help="MLflow: a record's run link, and the registered models' aliases.", no_args_is_help=True)
app.add_typer(group, name="mlflow")


def _tracking_uri() -> str:
    from config.settings import get_settings

    uri = get_settings().mlflow_tracking_uri
    if not uri:
        raise typer.BadParameter("PFD_MLFLOW_TRACKING_URI is not set: MLflow tracking is off")
    return uri


@group.command()
def link(
    record_id: str = typer.Argument(..., help="An experiment, campaign or deployment id."),
    kind: str = typer.Option("experiment", help="experiment, campaign, trial or deployment."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print the MLflow UI link of a record's run."""
    from mlflow import MlflowClient

    from actors.platform.mlflow_runs import run_link
    from actors.store.db import get_database
    from actors.store.mlflow_runs import find_mlflow_run
    from config.settings import get_settings

    uri = _tracking_uri()
    run_id = find_mlflow_run(get_database(get_settings().database_url), kind, record_id)
    if run_id is None:
        typer.echo(f"{kind} {record_id!r} has no MLflow run (yet)", err=True)
        raise typer.Exit(1)
    experiment_id = MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
    url = run_link(uri, experiment_id, run_id)
    emit({"kind": kind, "record_id": record_id, "run_id": run_id, "url": url}, as_json, one_row("MLflow run", url))


@group.command()
def promote(
    model_key: str = typer.Argument(..., help="The registered model (named after the model key)."),
    version: str = typer.Argument(..., help="The model version the alias moves to."),
    alias: str = typer.Option("champion", help="The alias to move."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Move an alias (``champion`` by default) of a registered model onto a version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = _tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.set_registered_model_alias(model_key, alias, version)
        found = client.get_model_version_by_alias(model_key, alias)
    except MlflowException as exc:
        typer.echo(f"MLflow refused: {exc.message}", err=True)
        raise typer.Exit(1) from None
    moved = {"model": model_key, "alias": alias, "version": found.version, "run_id": found.run_id}
    emit(moved, as_json, one_row(f"{model_key}@{alias}", f"version {found.version}"))
