"""The domain work of PFD Actors as plain Python.

Nothing here imports dramatiq, periodiq, SQLAlchemy or ``config``: functions take plain
data plus an ``on_progress(fraction, status="", **metrics)`` callable and a
``should_stop()`` callable, and return plain data, so they run and test without a broker.
"""
