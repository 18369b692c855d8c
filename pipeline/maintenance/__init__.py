"""Maintenance work as plain Python: what to clean up, and cleaning it."""
