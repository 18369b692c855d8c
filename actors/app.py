"""The application: the broker with every middleware, then every actor module.

This is the module the ``dramatiq`` and ``periodiq`` commands load (see the Procfile), and
the one a producer imports before calling ``actor.send(...)``.
"""

from __future__ import annotations

from config.broker import setup_broker
from config.settings import get_settings

broker = setup_broker(get_settings())

# Actor modules bind to the global broker when imported, so they come after it.
from actors import jobs  # noqa: E402

__all__ = ["broker", "jobs"]
