"""The record pages: datasets, experiments, campaigns, deployments, analyses and the other kinds.

Each shows the record's fields and the PNG plots it (or its analyses) names, and by kind its
class counts and example signals, training curve and test metrics, trials with stop and
resume, or stages, variants and the recommended variant. Charts are drawn on the server.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from actors.platform.errors import PayloadInvalid
from actors.web.pages import operator, render, viewer
from actors.web.reads import dataset_description, plot_paths, record_or_404, training_run

__all__ = ["records_router"]

records_router = APIRouter(include_in_schema=False, dependencies=[Depends(viewer)])


@records_router.get("/records/{kind}")
def records(request: Request, kind: str, page: int = 1) -> HTMLResponse:
    """Domain records of one kind, newest first."""
    from actors.platform.jobs import job_store
    from actors.store.listings import RECORD_KINDS, list_records

    identity = viewer(request)
    if kind not in RECORD_KINDS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no record kind {kind!r}")
    page = max(page, 1)
    found = list_records(job_store().database, kind, limit=50, offset=(page - 1) * 50)
    return render(request, "records.html", identity, kind=kind, columns=RECORD_KINDS[kind].columns,
                 records=found, page=page)


@records_router.get("/records/{kind}/{record_id}")
def record(request: Request, kind: str, record_id: str) -> HTMLResponse:
    """One record: its fields, its plots, and by kind its training curve, class counts or trials."""
    from actors.platform.jobs import job_store
    from actors.store.listings import list_records

    identity = viewer(request)
    found = record_or_404(kind, record_id)
    settings = request.app.state.settings
    related: list[dict[str, Any]] = []
    if kind == "experiments":
        # The evaluations of this experiment (ROC, confusion matrix, ...) among recent analyses.
        related = [a for a in list_records(job_store().database, "analyses", limit=500)
                   if record_id in (a.get("experiment_ids") or [])]
    plots = plot_paths(settings, found, *related)
    described = dataset_description(settings, found) if kind == "datasets" else None
    run = training_run(settings, found) if kind == "experiments" else None
    return render(request, "record.html", identity, kind=kind, record=found, record_id=record_id, plots=plots,
                 related=related, optuna_url=settings.optuna_dashboard_url, described=described, run=run,
                 fields=json.dumps(found, indent=2, default=str))


@records_router.get("/records/datasets/{dataset_id}/examples.png")
def example_signals(request: Request, dataset_id: str) -> Response:
    """A record of each class from the dataset's training split: its signal and spectrum."""
    from actors.web.charts import example_signals_png
    from actors.web.reads import artifact_file

    viewer(request)
    dataset = record_or_404("datasets", dataset_id)
    if not dataset.get("path"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dataset {dataset_id!r} has no HDF5 file")
    path = artifact_file(request.app.state.settings, dataset["path"])
    return Response(example_signals_png(str(path)), media_type="image/png", headers={"Cache-Control": "no-store"})


@records_router.get("/records/campaigns/{campaign_id}/best.png")
def best_value(campaign_id: str) -> Response:
    """The campaign's trial values and the best so far, by trial number, drawn on the server."""
    from actors.web.charts import best_value_png

    campaign = record_or_404("campaigns", campaign_id)
    png = best_value_png(campaign.get("trials") or {}, direction=campaign.get("direction") or "maximize",
                         metric=campaign.get("metric") or "value")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@records_router.post("/records/campaigns/{campaign_id}/{action}")
def steer_campaign(
    request: Request, campaign_id: str, action: str, csrf_token_: str = Form("", alias="csrf_token"),
) -> Response:
    """Stop or resume a campaign (operators), then follow the job that does it."""
    from actors.platform.operations import steer_campaign as steer

    operator(request, csrf_token_)
    campaign = record_or_404("campaigns", campaign_id)
    try:
        message = steer(request.app.state.broker, campaign["kind"], campaign_id, action)
    except PayloadInvalid as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return RedirectResponse(f"/jobs/{message.message_id}", status.HTTP_303_SEE_OTHER)


@records_router.get("/records/experiments/{experiment_id}/curve.png")
def training_curve(request: Request, experiment_id: str) -> Response:
    """The experiment's training curve (loss and accuracy per epoch), drawn on the server."""
    from actors.platform.jobs import job_store
    from actors.store.experiments import experiment_history
    from actors.web.charts import training_curve_png

    viewer(request)
    record_or_404("experiments", experiment_id)
    png = training_curve_png(experiment_history(job_store().database, experiment_id))
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


# The paths notification links use (pipeline.notify.events), to the record pages here, so
# PFD_DASHBOARD_URL can point at this dashboard. Listed one by one: a catch-all
# ``/{kind}/{id}`` route would also catch ``/static/...``.
_LINK_KINDS = {"datasets": "datasets", "experiments": "experiments", "deployments": "deployments",
               "hpo": "campaigns", "nas": "campaigns", "xai": "explanations", "evaluations": "analyses"}


def _link_route(kind: str):  # type: ignore[no-untyped-def]
    def follow_link(request: Request, record_id: str) -> Response:
        viewer(request)
        return RedirectResponse(f"/records/{kind}/{quote(record_id, safe='')}", status.HTTP_303_SEE_OTHER)

    return follow_link


for _prefix, _kind in _LINK_KINDS.items():
    records_router.add_api_route(f"/{_prefix}/{{record_id}}", _link_route(_kind), methods=["GET"])
