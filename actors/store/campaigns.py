"""Search campaigns (HPO and NAS), their trials and waves, and NAS candidates.

A campaign row is the campaign's own account of its trials: ``trials`` maps each Optuna
trial number to its state, message, value and record; ``waves`` lists its fan-outs. Every
change goes through ``update_campaign`` under a row lock, so trial workers, the finalize
callback and a stop never lose each other's writes. A NAS candidate is unique per campaign
by the hash of its architecture; that constraint is what skips a duplicate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from actors.platform.errors import RecordConflict, RecordNotFound, StoreError
from actors.store.db import Database
from actors.store.domain import row_or_missing
from actors.store.experiments import Experiment
from actors.store.models import Base, utcnow
from actors.store.outbox import stage_events

__all__ = [
    "CAMPAIGN_STATES",
    "DONE_TRIAL_STATES",
    "FINAL_TRIAL_STATES",
    "Campaign",
    "NasCandidate",
    "add_wave",
    "campaign_view",
    "claim_candidate",
    "create_campaign",
    "end_wave",
    "get_campaign",
    "list_candidates",
    "record_trials",
    "set_test_metrics",
    "start_candidate",
    "update_campaign",
    "update_candidate",
]

CAMPAIGN_STATES = ("running", "completed", "failed", "cancelled")
# A trial that is done counts towards the plan; the others in FINAL are run again on resume.
DONE_TRIAL_STATES = frozenset({"complete", "pruned", "failed"})
FINAL_TRIAL_STATES = DONE_TRIAL_STATES | {"cancelled", "skipped", "duplicate"}


class Campaign(Base):
    """An HPO or NAS campaign: its spec, study, trials, waves, best result and state."""

    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    study_name: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(20))
    space: Mapped[dict[str, Any]]
    spec: Mapped[dict[str, Any]]
    n_trials: Mapped[int] = mapped_column(Integer)
    parallelism: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(40))
    direction: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), index=True)
    best: Mapped[dict[str, Any] | None]
    counts: Mapped[dict[str, Any]]
    trials: Mapped[dict[str, Any]]
    waves: Mapped[list[Any]]
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # A resume asked for while stopped trials had not yet reached their next epoch: the last
    # of them to stop carries it out (actors.campaigns.resume_campaign).
    resume_job_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]


class NasCandidate(Base):
    """One sampled architecture of a NAS campaign, its trial, state and measured metrics."""

    __tablename__ = "nas_candidates"
    __table_args__ = (UniqueConstraint("campaign_id", "arch_hash", name="uq_nas_candidates_campaign_arch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    arch_hash: Mapped[str] = mapped_column(String(64))
    arch: Mapped[dict[str, Any]]
    trial_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    metrics: Mapped[dict[str, Any] | None]
    job_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def campaign_view(row: Campaign) -> dict[str, Any]:
    """Return what a caller reads of a campaign: state, progress, counts, best so far."""
    done = sum(row.counts.get(state, 0) for state in DONE_TRIAL_STATES)
    return {
        "campaign_id": row.id, "kind": row.kind, "name": row.name, "dataset_id": row.dataset_id,
        "status": row.status, "study_name": row.study_name, "method": row.method, "metric": row.metric,
        "direction": row.direction, "n_trials": row.n_trials, "parallelism": row.parallelism,
        "trials_done": done, "progress": min(done / row.n_trials, 1.0) if row.n_trials else 1.0,
        "best": row.best, "best_value": (row.best or {}).get("value"), "counts": dict(row.counts),
        "trials": dict(row.trials), "fanout_ids": [w["fanout_id"] for w in row.waves],
        "waves": list(row.waves), "space": row.space, "spec": row.spec, "error": row.error, "job_id": row.job_id,
        "resume_job_id": row.resume_job_id,
    }


def _recount(row: Campaign) -> None:
    """Derive the counts and the best completed trial from the trials (kept with the row for reads)."""
    row.counts = dict(Counter(entry["state"] for entry in row.trials.values()))
    scored = [(int(n), e) for n, e in row.trials.items() if e["state"] == "complete" and e.get("value") is not None]
    if not scored:
        return
    sign = 1 if row.direction == "maximize" else -1
    number, entry = max(scored, key=lambda item: (sign * item[1]["value"], -item[0]))  # ties: the earliest
    best = {"trial": number, "value": entry["value"], "params": entry.get("params", {}),
            **{k: entry[k] for k in ("experiment_id", "arch_hash") if k in entry}}
    if row.best and row.best.get("trial") == number:
        best = {**row.best, **best}  # keep what was added to this best (its test metrics)
    row.best = best


def create_campaign(database: Database, campaign_id: str, job_id: str, **fields: Any) -> tuple[bool, dict[str, Any]]:
    """Create a ``running`` campaign; return (created, view).

    A campaign that exists is returned as it is (``created`` false) when this job created it
    (a redelivered message) or it is no longer running.

    Raises:
        RecordConflict: another job is running a campaign with this id.
    """
    with database.session() as session:
        row = session.get(Campaign, campaign_id, with_for_update=True)
        if row is not None:
            if row.status == "running" and row.job_id != job_id:
                raise RecordConflict(f"campaign {campaign_id!r} is already running (job {row.job_id})")
            return False, campaign_view(row)
        row = Campaign(id=campaign_id, job_id=job_id, status="running", best=None, counts={}, trials={}, waves=[],
                       **fields)
        session.add(row)
        session.flush()
        return True, campaign_view(row)


def get_campaign(database: Database, campaign_id: str) -> dict[str, Any]:
    """Return a campaign's view; raises ``RecordNotFound``."""
    with database.session() as session:
        row = row_or_missing(session, Campaign, campaign_id, "campaign")
        return campaign_view(row)


def update_campaign(
    database: Database, campaign_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None], *,
    events: Callable[[dict[str, Any]], Iterable[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Apply ``change`` to a campaign under its row lock; return the new view.

    ``change`` receives the current view and returns the fields to set (``trials`` entries
    are merged per trial; ``waves`` and the rest are replaced), or ``None`` to leave it.
    When it changed something, ``events(new view)`` go to the outbox in the same transaction.
    """
    with database.session() as session:
        row = session.get(Campaign, campaign_id, with_for_update=True)
        if row is None:
            raise RecordNotFound(f"no campaign with id {campaign_id!r}")
        fields = change(campaign_view(row)) or {}
        changed = bool(fields)
        trials = fields.pop("trials", None)
        if trials:
            merged = dict(row.trials)
            for number, entry in trials.items():
                merged[str(number)] = {**merged.get(str(number), {}), **entry}
            row.trials = merged  # reassigned, not mutated: JSON columns track assignment only
            _recount(row)
        for name, value in fields.items():
            setattr(row, name, value)
        if fields.get("status") in ("completed", "failed", "cancelled") and row.finished_at is None:
            row.finished_at = utcnow()
        session.flush()
        view = campaign_view(row)
        if changed and events is not None:
            stage_events(session, events(view))
        return view


def record_trials(database: Database, campaign_id: str, entries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Merge ``entries`` into the campaign's trials (by trial number); return the new view."""
    return update_campaign(database, campaign_id, lambda view: {"trials": entries} if entries else None)


def add_wave(database: Database, campaign_id: str, fanout_id: str, entries: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Record a wave and its queued trials, if the campaign still runs; return the view, else ``None``."""
    def change(view: dict[str, Any]) -> dict[str, Any] | None:
        if view["status"] != "running":
            return None
        wave = {"fanout_id": fanout_id, "trials": sorted(entries), "finalized": False}
        return {"waves": [*view["waves"], wave], "trials": entries}

    view = update_campaign(database, campaign_id, change)
    return view if fanout_id in view["fanout_ids"] else None


def end_wave(database: Database, campaign_id: str, fanout_id: str) -> dict[str, Any]:
    """Mark a wave finalized (its callback has run); return the view."""
    return update_campaign(database, campaign_id, lambda view: {"waves": [
        {**w, "finalized": True} if w["fanout_id"] == fanout_id else w for w in view["waves"]]})


def set_test_metrics(database: Database, experiment_id: str, metrics: dict[str, Any]) -> None:
    """Record the test metrics of a campaign's best trial on its experiment."""
    with database.session() as session:
        row = session.get(Experiment, experiment_id, with_for_update=True)
        if row is None:
            raise RecordNotFound(f"no experiment with id {experiment_id!r}")
        row.metrics = metrics


def _candidate(row: NasCandidate) -> dict[str, Any]:
    return {"campaign_id": row.campaign_id, "arch_hash": row.arch_hash, "arch": row.arch,
            "trial_number": row.trial_number, "status": row.status, "metrics": row.metrics,
            "job_id": row.job_id, "error": row.error}


def claim_candidate(
    database: Database, campaign_id: str, arch_hash: str, arch: dict[str, Any], trial_number: int,
) -> tuple[bool, dict[str, Any]]:
    """Claim an architecture for ``trial_number``; return (claimed, candidate).

    Not claimed: the campaign already has this architecture (a duplicate), unless the trial
    that had it was cancelled or skipped (a stop, or a crash before it told the study), in
    which case the new trial takes it over; a candidate already trained keeps its metrics,
    so the new trial reports them instead of training it again (``start_candidate``).
    """
    try:
        with database.session() as session:
            row = session.scalars(_candidate_query(campaign_id, arch_hash).with_for_update()).first()
            if row is None:
                row = NasCandidate(campaign_id=campaign_id, arch_hash=arch_hash, arch=arch,
                                   trial_number=trial_number, status="queued")
                session.add(row)
                session.flush()
                return True, _candidate(row)
            campaign = session.get(Campaign, campaign_id)
            owner = (campaign.trials if campaign else {}).get(str(row.trial_number), {}).get("state")
            if owner in ("cancelled", "skipped"):  # its run was stopped: a new trial takes it over
                row.trial_number = trial_number
                if row.status != "complete":
                    row.status, row.error, row.job_id = "queued", None, None
                return True, _candidate(row)
            return False, _candidate(row)
    except StoreError as exc:
        if not isinstance(exc.__cause__, IntegrityError):
            raise
    # Another process inserted the same architecture at the same moment: a duplicate.
    with database.session() as session:
        return False, _candidate(session.scalars(_candidate_query(campaign_id, arch_hash)).one())


def _candidate_query(campaign_id: str, arch_hash: str):  # type: ignore[no-untyped-def]
    return select(NasCandidate).where(NasCandidate.campaign_id == campaign_id, NasCandidate.arch_hash == arch_hash)


def _locked_candidate(session: Session, campaign_id: str, arch_hash: str) -> NasCandidate:
    row = session.scalars(_candidate_query(campaign_id, arch_hash).with_for_update()).first()
    if row is None:
        raise RecordNotFound(f"campaign {campaign_id!r} has no candidate {arch_hash}")
    return row


def start_candidate(database: Database, campaign_id: str, arch_hash: str, job_id: str) -> dict[str, Any]:
    """Mark a candidate ``running`` under ``job_id`` unless it is already trained; return it.

    Raises:
        RecordNotFound: the campaign has no such candidate.
    """
    with database.session() as session:
        row = _locked_candidate(session, campaign_id, arch_hash)
        if row.status != "complete":
            row.status, row.job_id, row.error = "running", job_id, None
        return _candidate(row)


def update_candidate(database: Database, campaign_id: str, arch_hash: str, **fields: Any) -> dict[str, Any]:
    """Set fields of a candidate; return it. Raises ``RecordNotFound``."""
    with database.session() as session:
        row = _locked_candidate(session, campaign_id, arch_hash)
        for name, value in fields.items():
            setattr(row, name, value)
        return _candidate(row)


def list_candidates(database: Database, campaign_id: str) -> list[dict[str, Any]]:
    """Return a campaign's candidates in trial order."""
    with database.session() as session:
        rows = session.scalars(
            select(NasCandidate).where(NasCandidate.campaign_id == campaign_id).order_by(NasCandidate.trial_number)
        ).all()
        return [_candidate(row) for row in rows]
