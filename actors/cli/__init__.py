"""The ``pfd`` command, one module per command group.

``common`` holds the Typer app the groups register on; importing this package registers
every group, so ``actors.cli:app`` (the console script) has them all.
"""

from actors.cli import (  # noqa: F401  (register commands)
    dashboard,
    database,
    demo,
    jobs,
    logs,
    maintenance,
    queues,
    records,
    reference,
    services,
    tracking,
)
from actors.cli.common import app

__all__ = ["app"]
