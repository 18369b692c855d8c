"""HPO/NAS tests: tiny noise-free datasets, tiny models, the session's real workers.

Campaign tests run on the root conftest's ``workers`` (every Procfile line, every actor
loaded) and read back what the workers recorded in the test PostgreSQL database, the
Optuna study in its shared storage, and the job records in Redis.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from actors.store.db import Database
from tests.records import make_dataset
from tests.waiting import wait_until

TINY_MODEL = {"width": 8, "depth": 2}
TINY_TRAINING = {"epochs": 2, "batch_size": 8, "scheduler": "none", "seed": 0}


def hpo_spec(**overrides: Any) -> dict[str, Any]:
    """A small campaign over the learning rate and the stage kernel of a tiny CNN."""
    spec = {
        "model_key": "cnn1d", "model_args": TINY_MODEL, "training": TINY_TRAINING, "method": "bayesian",
        "n_trials": 4, "parallelism": 2, "metric": "val_accuracy", "seed": 0,
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
                  "kernel_size": {"type": "categorical", "choices": [3, 5, 7]}},
    }
    return {**spec, **overrides}


def nas_spec(**overrides: Any) -> dict[str, Any]:
    """A small NAS campaign: one or two layers of tiny convolutions and pooling, one short epoch each."""
    spec = {"method": "tpe", "n_candidates": 3, "parallelism": 3, "seed": 3,
            "space": {"min_layers": 1, "max_layers": 2, "ops": ["conv3", "sepconv5", "maxpool"], "widths": [4, 8]},
            "training": {"epochs": 1, "batch_size": 8, "scheduler": "none", "seed": 0}}
    return {**spec, **overrides}


def new_id(prefix: str) -> str:
    """A campaign id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def trials_done(campaign_id: str) -> int:
    """How many trials of a campaign are done (0 while it has no record yet)."""
    from actors.campaigns import campaign_status
    from actors.platform.errors import RecordNotFound

    try:
        return campaign_status(campaign_id)["trials_done"]
    except RecordNotFound:
        return 0


def campaign_study(pg_url: str, campaign_id: str):  # type: ignore[no-untyped-def]
    """The campaign's Optuna study, loaded from the shared storage as another process would."""
    import optuna

    from pipeline.hpo.study import open_storage

    return optuna.load_study(study_name=campaign_id, storage=open_storage(pg_url))


@pytest.fixture(scope="session")
def hpo_dataset(database: Database) -> dict:
    """Three records of each of three separable classes (split 1/1/1)."""
    return make_dataset(database, "ds-hpo-tiny", records_per_class=3)


def wait_for_campaign(database: Database, campaign_id: str, states: tuple[str, ...], timeout: float = 120.0) -> dict:
    """Wait until the campaign exists and is in one of ``states``, with no trial left open."""
    from actors.platform.errors import RecordNotFound
    from actors.store.campaigns import FINAL_TRIAL_STATES, get_campaign

    def settled() -> dict | None:
        try:
            view = get_campaign(database, campaign_id)
        except RecordNotFound:
            return None
        open_trials = [e for e in view["trials"].values() if e["state"] not in FINAL_TRIAL_STATES]
        return view if view["status"] in states and not open_trials else None

    return wait_until(settled, timeout=timeout, interval=0.2, what=f"campaign {campaign_id} to reach {states}")
