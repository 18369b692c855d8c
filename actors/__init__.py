"""Dramatiq actors of PFD Actors, one module per domain.

Importing this package does nothing heavy: ``actors.app`` sets up the broker and loads
every actor module (it is the module the ``dramatiq`` and ``periodiq`` commands load).
"""
