"""Deprecated: import ``actors.platform.jobs``; this path stays for callers written before the layout move."""
import warnings

from actors.platform.jobs import *  # noqa: F403  (one-line re-export of the public names)

warnings.warn("actors.jobs is deprecated; import actors.platform.jobs", DeprecationWarning, stacklevel=2)
