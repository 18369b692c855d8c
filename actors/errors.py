"""Deprecated: import ``actors.platform.errors``; this path stays for callers written before the layout move."""
import warnings

from actors.platform.errors import *  # noqa: F403  (one-line re-export of the public names)

warnings.warn("actors.errors is deprecated; import actors.platform.errors", DeprecationWarning, stacklevel=2)
