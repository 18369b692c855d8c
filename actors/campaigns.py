"""The wave machinery shared by HPO and NAS campaigns: waves, their callbacks, stop, resume, trials.

A campaign sends ``parallelism`` trials at a time as one fan-out group whose completion
callback settles the wave and sends the next one, until ``n_trials`` are done. The Optuna
study (``pipeline.hpo.study``) decides what each trial runs and is told each outcome once;
the campaign record (``actors.store.campaigns``) keeps what each trial's job did. What
differs between HPO and NAS (how to open the study, ask a trial, conclude) is a ``Flavor``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import dramatiq
import structlog
from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from actors.campaigns_mlflow import track_campaign_end, track_trials
from actors.platform.base import Payload
from actors.platform.context import JobContext
from actors.platform.errors import JobNotFound
from actors.platform.fanout import fan_out, fanout_store
from actors.platform.jobs import get_job, request_cancel
from actors.platform.references import DatasetId, RecordId
from actors.store.campaigns import (
    FINAL_TRIAL_STATES,
    add_wave,
    create_campaign,
    end_wave,
    get_campaign,
    record_trials,
    update_campaign,
)
from actors.store.db import Database, get_database
from actors.training import load_training_dataset, ready_dataset
from config.settings import get_settings
from pipeline.errors import InvalidInput

__all__ = [
    "CampaignId",
    "CampaignRef",
    "CampaignStart",
    "Flavor",
    "RecordId",
    "TrialPayload",
    "TrialRun",
    "begin_trial",
    "campaign_event",
    "campaign_status",
    "conclude",
    "finalize_campaign",
    "finish_trial",
    "launch_wave",
    "load_dataset",
    "project_database",
    "resume_campaign",
    "start_campaign",
    "stop_campaign",
    "summary",
]

log = structlog.get_logger("pfd.campaigns")
# Shorter than a record id: trial experiments are named "<campaign id>-t<number>" (64 at most).
CampaignId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")]


class CampaignRef(Payload):
    """A campaign by id (stop), or one of its finished waves (``fanout_id``: finalize)."""

    campaign_id: CampaignId
    fanout_id: str | None = Field(None, max_length=200)


class CampaignStart(Payload):
    """A new campaign (``dataset_id`` + ``spec``, refused on send when the spec is bad), or a resume.

    Each kind sets ``parse_spec`` to its spec check; it raises ``InvalidInput``, a
    ``ValueError``, so a bad spec is refused on send with the field it names.
    """

    parse_spec: ClassVar[Callable[[dict[str, Any]], Any]]

    campaign_id: CampaignId | None = None
    resume: bool = False
    dataset_id: DatasetId | None = Field(None, description="the completed dataset every trial trains on")
    name: str = Field("", max_length=200)
    spec: dict[str, Any] = Field(default_factory=dict, description="the campaign: model_key, space, method, "
                                 "n_trials, parallelism, training, ... (see docs/actors.md)")

    @field_validator("spec")
    @classmethod
    def _spec_accepted(cls, spec: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not info.data.get("resume"):
            cls.parse_spec(spec)
        return spec

    @model_validator(mode="after")
    def _a_spec_or_a_resume(self) -> CampaignStart:
        if self.resume and (self.campaign_id is None or self.dataset_id or self.spec):
            raise ValueError("resume takes campaign_id only: the spec is the campaign's own")
        if not self.resume and self.dataset_id is None:
            raise ValueError("a new campaign needs dataset_id and spec")
        return self


class TrialPayload(Payload):
    """One trial of a campaign: its number and storage id in the study, and its sampled values."""

    campaign_id: CampaignId
    trial_number: int = Field(ge=0)
    trial_id: int = Field(ge=0)
    params: dict[str, Any]


@dataclass(frozen=True)
class Flavor:
    """What differs between HPO and NAS campaigns; waves, stop and resume are shared."""

    kind: str
    member: str  # the trial actor's name
    finalize: str  # the wave callback's name
    study: Callable[[dict[str, Any]], Any]  # open the campaign's study with this wave's sampler
    ask: Callable[[Database, dict[str, Any], Any, int], list[Any]]  # ask up to n new trials
    conclude: Callable[[Database, dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]  # the best, its event
    failed: Callable[[dict[str, Any]], dict[str, Any]]  # the event of a campaign in which no trial completed
    check: Callable[[dict[str, Any]], Any]  # the full check of a new campaign's spec, on receipt


@dataclass(frozen=True)
class TrialRun:
    """A trial a worker holds: its campaign as read at start, its study, its job."""

    database: Database
    view: dict[str, Any]
    study: Any
    number: int
    job: JobContext
    flavor: Flavor


def summary(view: dict[str, Any]) -> dict[str, Any]:
    """Return the small part of a campaign's view that a job records as its result."""
    names = ("campaign_id", "kind", "status", "n_trials", "trials_done", "progress", "best_value", "counts", "fanout_ids",
             "resume_job_id")
    return {name: view[name] for name in names}


def campaign_status(campaign_id: str) -> dict[str, Any]:
    """Return a campaign's view by id (progress = trials done / planned, best so far); raises ``RecordNotFound``."""
    return get_campaign(project_database(), campaign_id)


def project_database() -> Database:
    """Return the project database of this process."""
    return get_database(get_settings().database_url)


def load_dataset(database: Database, dataset_id: str):  # type: ignore[no-untyped-def]
    """Return a completed dataset's splits, checked exactly as ``train_model`` checks them, in
    memory when they fit ``PFD_TRAINING_MEMORY_MB``, else read a group of records at a time."""
    return load_training_dataset(ready_dataset(database, dataset_id), get_settings().training_memory_mb)


def campaign_event(event: str, payload: dict[str, Any], campaign_id: str) -> dict[str, Any]:
    """The outbox row announcing a campaign's end, one per campaign and event type."""
    from actors.notifications import outbox_event

    return outbox_event(event, payload, event_id=f"{event}:{campaign_id}")


def launch_wave(database: Database, view: dict[str, Any], flavor: Flavor) -> dict[str, Any]:
    """Ask the next wave's trials and send them as one group; end the campaign when none remain."""
    from pipeline.hpo.study import tell_trial

    remaining, study = view["n_trials"] - view["trials_done"], flavor.study(view)
    asked = flavor.ask(database, view, study, min(view["parallelism"], remaining)) if remaining > 0 else []
    if not asked:
        return conclude(database, get_campaign(database, view["campaign_id"]), flavor)
    campaign_id, broker = view["campaign_id"], dramatiq.get_broker()
    fanout_id = f"{campaign_id}-w{len(view['waves'])}"
    messages = [broker.get_actor(flavor.member).message(
        campaign_id=campaign_id, trial_number=t.number, trial_id=t.trial_id, params=t.params) for t in asked]
    recorded = add_wave(database, campaign_id, fanout_id, {
        t.number: {"state": "queued", "message_id": m.message_id, "params": t.params, "wave": fanout_id}
        for t, m in zip(asked, messages)})
    if recorded is None:  # stopped meanwhile: these trials never run; recorded skipped, a resume runs them
        for t in asked:
            tell_trial(study, t.number, value=None, outcome="skipped")
        return record_trials(database, campaign_id, {t.number: {"state": "skipped", "params": t.params} for t in asked})
    finalize = broker.get_actor(flavor.finalize).message(campaign_id=campaign_id, fanout_id=fanout_id)
    fan_out(messages, kind=flavor.kind, owner_id=campaign_id, finalize=finalize, fanout_id=fanout_id)
    log.info("campaign.wave_sent", campaign_id=campaign_id, fanout_id=fanout_id, trials=[t.number for t in asked])
    return recorded


def conclude(database: Database, view: dict[str, Any], flavor: Flavor) -> dict[str, Any]:
    """End a running campaign: ``completed`` with its best (``flavor.conclude``), or ``failed``."""
    if view["status"] != "running":
        return view
    # The ending wave is finalized in the same write, so no reader sees an ended campaign
    # with a wave still open; the ending's event commits with it (the outbox).
    if view["best"] is None:
        view = update_campaign(database, view["campaign_id"], lambda v: {
            "status": "failed", "error": f"no trial completed: {v['counts']}", "waves": _all_finalized(v)}
            if v["status"] == "running" else None, events=lambda v: [flavor.failed(v)])
    else:
        best, event = flavor.conclude(database, view)
        view = update_campaign(database, view["campaign_id"], lambda v: {
            "status": "completed", "best": best, "waves": _all_finalized(v)} if v["status"] == "running" else None,
            events=lambda v: [event])
    _relay_ending(view)
    track_campaign_end(database, view)
    return view


def _relay_ending(view: dict[str, Any]) -> None:
    """Relay the ended campaign's event now (else the outbox's sweep does)."""
    from actors.notifications import relay_now

    relay_now([f"{view['kind']}.{view['status']}:{view['campaign_id']}"])


def _all_finalized(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**w, "finalized": True} for w in view["waves"]]


def _settle(database: Database, view: dict[str, Any], study: Any, numbers: list[int], reason: str | None) -> dict:
    """Record the outcome of trials not yet final, as the study holds it (see ``pipeline.hpo.study.settle``)."""
    from pipeline.hpo.study import settle

    open_numbers = [n for n in numbers if view["trials"][str(n)]["state"] not in FINAL_TRIAL_STATES]
    view = record_trials(database, view["campaign_id"], settle(
        study, open_numbers, lambda n: reason or _job_outcome(view["trials"][str(n)].get("message_id"))))
    track_trials(database, view, open_numbers)
    return view


def _job_outcome(message_id: str | None) -> str:
    """Why a trial that never told the study ended: its job was skipped (cancelled) or it failed."""
    try:
        return "skipped" if get_job(message_id or "").state == "cancelled" else "failed"
    except JobNotFound:
        return "skipped"


def finalize_campaign(database: Database, campaign_id: str, fanout_id: str, flavor: Flavor) -> dict[str, Any]:
    """Settle a finished wave, then send the next one or end the campaign; once per wave."""
    view = get_campaign(database, campaign_id)
    wave = view["waves"][-1] if view["waves"] else {}
    if wave.get("fanout_id") != fanout_id or wave.get("finalized"):
        return view  # a repeated callback, or a wave that a resume replaced
    view = _settle(database, view, flavor.study(view), wave["trials"], None)
    state = "completed" if view["status"] == "running" else view["status"]
    fanout_store().finish(fanout_id, state, {"counts": view["counts"], "best_value": view["best_value"]})
    if view["status"] == "running":
        launch_wave(database, view, flavor)
    return end_wave(database, campaign_id, fanout_id)


def stop_campaign(database: Database, campaign_id: str, flavor: Flavor) -> dict[str, Any]:
    """End a running campaign ``cancelled``: its running trials stop at their next epoch, queued ones are skipped."""
    view = update_campaign(database, campaign_id, lambda v: {"status": "cancelled", "error": "stopped by request"}
                           if v["status"] == "running" else None)
    if view["status"] != "cancelled":
        return view
    skipped = []
    for number, entry in view["trials"].items():
        if entry["state"] not in FINAL_TRIAL_STATES:
            try:
                job = request_cancel(entry["message_id"])
            except JobNotFound:
                job = None
            if job is None or job.state in ("queued", "retrying"):
                skipped.append(int(number))
    view = _settle(database, view, flavor.study(view), skipped, "skipped") if skipped else view
    for wave in view["waves"]:
        if not wave["finalized"]:  # earlier waves keep their outcome
            fanout_store().finish(wave["fanout_id"], "cancelled", {"counts": view["counts"]})
    track_campaign_end(database, view)
    return view


def _live(entry: dict[str, Any]) -> bool:
    try:
        return not get_job(entry.get("message_id") or "").final
    except JobNotFound:
        return False


def _stopping(view: dict[str, Any]) -> int:
    """How many of a campaign's trials have no outcome yet while their job still runs."""
    return sum(_live(e) for e in view["trials"].values() if e["state"] not in FINAL_TRIAL_STATES)


def start_campaign(payload: CampaignStart, job: JobContext, flavor: Flavor) -> dict[str, Any]:
    """Check a new campaign, record it, create its study and send its first wave; or resume one."""
    database, campaign_id = project_database(), payload.campaign_id or f"{flavor.kind}-{job.message_id}"
    if payload.resume:
        return summary(resume_campaign(database, campaign_id, job.message_id, flavor))
    spec = flavor.check(payload.spec)
    ready_dataset(database, payload.dataset_id)  # type: ignore[arg-type]
    created, view = create_campaign(
        database, campaign_id, job.message_id, kind=flavor.kind, name=payload.name, dataset_id=payload.dataset_id,
        study_name=campaign_id, method=spec.method, space=spec.space.to_dict(), spec=spec.to_dict(),
        n_trials=spec.n_trials, parallelism=spec.parallelism, metric=spec.metric, direction=spec.direction)
    if not created and (view["waves"] or view["status"] != "running"):
        return summary(view)  # a redelivered message: the campaign is already under way
    return summary(launch_wave(database, view, flavor))


def resume_campaign(database: Database, campaign_id: str, job_id: str, flavor: Flavor) -> dict[str, Any]:
    """Continue a stopped or crashed campaign's study: done trials stay, interrupted ones run again.

    A stopped trial stops at its next epoch, which may be minutes away: a resume that finds
    trials still stopping is recorded on the campaign (``resume_job_id``) and carried out by
    the last of them to record its outcome (``finish_trial``), not retried against the clock.
    """
    view = get_campaign(database, campaign_id)
    if view["status"] == "completed" or (view["status"] == "running" and _stopping(view)):
        return view  # nothing to resume: finished, or still under way
    if view["status"] == "running":  # crashed: no trial of it still runs
        return _resume(database, view, job_id, flavor)
    update_campaign(database, campaign_id, lambda v: {"resume_job_id": job_id}
                    if v["status"] in ("cancelled", "failed") else None)
    view = _resume_once_stopped(database, campaign_id, flavor)
    if view["resume_job_id"] == job_id:
        log.info("campaign.resume_waits", campaign_id=campaign_id, trials_stopping=_stopping(view))
    return view


def _resume_once_stopped(database: Database, campaign_id: str, flavor: Flavor) -> dict[str, Any]:
    """Carry out a recorded resume if no trial is still stopping; exactly one caller claims it."""
    claimed: list[str] = []

    def claim(view: dict[str, Any]) -> dict[str, Any] | None:
        if view["resume_job_id"] and view["status"] in ("cancelled", "failed") and not _stopping(view):
            claimed.append(view["resume_job_id"])
            return {"resume_job_id": None}
        return None

    view = update_campaign(database, campaign_id, claim)
    return _resume(database, view, claimed[0], flavor) if claimed else view


def _resume(database: Database, view: dict[str, Any], job_id: str, flavor: Flavor) -> dict[str, Any]:
    """Settle the interrupted trials, queue their values again and send the next wave."""
    from pipeline.hpo.study import abandon_running, requeue

    campaign_id = view["campaign_id"]
    study = flavor.study(view)
    abandon_running(study, "cancelled")
    view = _settle(database, view, study, [int(n) for n in view["trials"]], "cancelled")
    again = {int(n): e for n, e in view["trials"].items() if e["state"] in ("cancelled", "skipped") and not e.get("requeued")}
    requeue(study, [e["params"] for e in again.values()])
    view = update_campaign(database, campaign_id, lambda v: {
        "status": "running", "error": None, "job_id": job_id, "trials": {n: {"requeued": True} for n in again},
        "waves": _all_finalized(v)})
    return launch_wave(database, view, flavor)


def begin_trial(payload: TrialPayload, job: JobContext, flavor: Flavor) -> TrialRun | None:
    """Open a trial for its worker; ``None`` when it must not run (told already, or stopped)."""
    db = project_database()
    view = get_campaign(db, payload.campaign_id)
    entry = view["trials"].get(str(payload.trial_number))
    if entry is None:
        job.fail(InvalidInput(f"campaign {payload.campaign_id!r} has no trial {payload.trial_number}"))
        return None
    if entry["state"] in FINAL_TRIAL_STATES:
        return None  # redelivered after its outcome was told
    run = TrialRun(db, view, flavor.study(view), payload.trial_number, job, flavor)
    job.progress(0.0, f"trial {payload.trial_number}")  # also learns of a cancel at once
    if view["status"] != "running" or job.should_stop():
        finish_trial(run, "skipped")
        return None
    return run


def finish_trial(run: TrialRun, state: str, value: float | None = None, tell: bool = True, **extra: Any) -> dict:
    """Tell the study a trial's outcome (the first tell wins) and record it on the campaign."""
    from pipeline.hpo.study import tell_trial, trial_outcome

    if tell and not tell_trial(run.study, run.number, value=value, outcome=state):
        state, value = trial_outcome(run.study, run.number)  # told first elsewhere (a stop): keep that
    entry = {"state": state, "value": value, "message_id": run.job.message_id, **extra}
    view = record_trials(run.database, run.view["campaign_id"], {run.number: entry})
    track_trials(run.database, view, [run.number])
    if view["resume_job_id"] and state in FINAL_TRIAL_STATES:  # a resume may wait on this trial
        _resume_once_stopped(run.database, view["campaign_id"], run.flavor)
    return view["trials"][str(run.number)]
