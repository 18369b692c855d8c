"""The application: the broker with every middleware, then every actor module.

This is the module the ``dramatiq`` and ``periodiq`` commands load (see the Procfile), and
the one a producer imports before calling ``actor.send(...)``.
"""

from __future__ import annotations

from actors.platform.actor_modules import load_actors
from actors.platform.broker.assembly import setup_broker
from config.settings import get_settings

broker = setup_broker(get_settings())
load_actors()

__all__ = ["broker"]
