"""Configuration of PFD Actors: settings, queue topology, broker and logging.

This is the only package that reads the environment. Everything else receives a
``Settings`` object (or values taken from it) explicitly.
"""

from config.settings import Settings, get_settings, mask_secrets

__all__ = ["Settings", "get_settings", "mask_secrets"]
