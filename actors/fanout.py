"""Deprecated: import ``actors.platform.fanout``; this path stays for callers written before the layout move."""
import warnings

from actors.platform.fanout import *  # noqa: F403  (one-line re-export of the public names)

warnings.warn("actors.fanout is deprecated; import actors.platform.fanout", DeprecationWarning, stacklevel=2)
