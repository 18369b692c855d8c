"""Every model module, imported together so Alembic and tests see the whole schema."""

from actors.store import (
    experiments,  # noqa: F401
    models,  # noqa: F401
    notifications,  # noqa: F401
)
from actors.store.models import Base

__all__ = ["Base"]
