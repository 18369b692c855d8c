"""structlog configuration: JSON lines in production, a readable console in development."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import sys
import threading
from typing import Any

import structlog

from config.settings import Settings, mask_secrets

__all__ = ["LineLogger", "StandardError", "adopt_library_handlers", "configure_logging"]


def _mask_event(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Mask URL passwords in every string value, so no secret reaches a log line."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "://" in value:
            event_dict[key] = mask_secrets(value)
    return event_dict


class StandardError:
    """The process's standard error (file descriptor 2), one ``write(2)`` per line, one lock.

    Under the dramatiq CLI a worker's ``sys.stderr`` is a pipe to the main process, which
    copies each line to its own standard error: a message on the pipe and a second write per
    line, a tenth of a no-op job's cost. A line written here whole goes straight to the same
    place, the standard error the worker inherited; on a pipe (a Procfile runner, systemd) or
    a file, a single write is never mixed with another process's.

    The lock keeps a line whole when the system writes it in parts. It is reentrant, so a
    line logged by a signal handler that interrupted a write of the same thread goes out
    before the rest of the interrupted line instead of waiting for it forever.
    """

    _lock = threading.RLock()

    def write(self, text: str) -> int:
        """Write ``text`` (a whole line) to descriptor 2 and return its length."""
        data = memoryview(text.encode("utf-8", errors="replace"))
        with self._lock:
            while data:
                data = data[os.write(2, data):]
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def isatty(self) -> bool:
        """Whether descriptor 2 is a terminal."""
        return os.isatty(2)


def adopt_library_handlers() -> None:
    """Route loggers that a library gave a stream handler of its own through ours.

    torch, on import, gives its loggers a plain-text stream handler to standard error and
    stops them propagating: their lines (the ONNX exporter's warnings) would not be JSON.
    """
    for logger in list(logging.root.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger) or logger.propagate:
            continue
        own = [h for h in logger.handlers if type(h) is logging.StreamHandler and h.stream in (sys.stderr, sys.__stderr__)]
        if own:
            for handler in own:
                logger.removeHandler(handler)
            logger.propagate = True


class _AdoptOnImport(importlib.abc.MetaPathFinder):
    """Calls ``adopt_library_handlers`` right after a module that sets up such handlers has loaded."""

    def __init__(self, modules: frozenset[str]) -> None:
        self.modules = modules

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        """Find ``fullname`` as the import system would, and wrap its loading when it is one of ours."""
        if fullname not in self.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            adopt_library_handlers()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


# ``import torch`` ends by giving torch's loggers their own handlers (torch._logging._init_logs).
_ADOPT_ON_IMPORT = _AdoptOnImport(frozenset({"torch"}))


def _drop_discarded_result_warnings(record: logging.LogRecord) -> bool:
    """Drop Dramatiq's warning that an actor's return value is not stored as a Dramatiq result.

    Our actors return their result on purpose: the job record keeps it whether or not the
    actor's policy also stores it in the results backend.
    """
    return not (record.name.startswith("dramatiq.results") and "returned a value that is not None" in record.getMessage())


class LineLogger:
    """A structlog logger that hands each rendered line to ``stream.write`` whole.

    structlog's own ``WriteLogger`` guards its file with a non-reentrant lock: a signal
    handler that logs while its thread is inside that lock would wait for itself. Here the
    only lock is the stream's own (reentrant, see ``StandardError``).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        """Write one rendered line."""
        self._stream.write(message + "\n")

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger (Dramatiq logs through it); lines go to
    ``stream``, by default the process's standard error (``StandardError``)."""
    stream = stream or StandardError()
    use_json = settings.log_json if settings.log_json is not None else not stream.isatty()
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[*shared, _mask_event, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line (print writes the line and its newline separately).
        logger_factory=lambda *_: LineLogger(stream),
        cache_logger_on_first_use=True,
    )
    # Dramatiq and libraries log through the stdlib; render them with the same processors.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _mask_event],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(_drop_discarded_result_warnings)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # warnings.warn (torch, the ONNX exporter, scikit-learn) as JSON lines too.
    logging.captureWarnings(True)
    adopt_library_handlers()
    if _ADOPT_ON_IMPORT not in sys.meta_path:
        sys.meta_path.insert(0, _ADOPT_ON_IMPORT)
    # Alembic announces its plugins at every schema check (every worker boot): keep quiet.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
