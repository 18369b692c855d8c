"""Every model module, imported together so Alembic and tests see the whole schema."""

from actors.store import models  # noqa: F401
from actors.store.models import Base

__all__ = ["Base"]
