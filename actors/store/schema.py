"""Every model module, imported together so Alembic and tests see the whole schema."""

from actors.store import (  # noqa: F401
    analyses,
    campaigns,
    deployments,
    experiments,
    explanations,
    mlflow_runs,
    models,
    notifications,
    outbox,
)
from actors.store.models import Base

__all__ = ["Base"]
