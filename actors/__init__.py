"""Dramatiq actors of PFD Actors: one module per domain at this level, plus ``app``.

``platform/`` is how any actor runs (jobs, fan-out, middleware, the broker), ``store/`` the
records, ``cli/`` the ``pfd`` command. Importing this package does nothing heavy:
``actors.app`` sets up the broker and loads every actor module (it is the module the
``dramatiq`` and ``periodiq`` commands load).
"""
