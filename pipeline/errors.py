"""Errors raised by ``pipeline``: one base class and one class per failure.

``InvalidInput`` and its subclasses are bad input: the job fails at once, never retried.
``StopRequested`` means ``should_stop()`` answered true (cancel or deadline); the caller
decides which of the two it was.
"""

from __future__ import annotations

__all__ = [
    "PipelineError",
    "InvalidInput",
    "StopRequested",
    "DatasetFileError",
    "MatFileError",
    "UnsafePath",
    "CheckpointError",
    "ParityError",
]


class PipelineError(Exception):
    """Base class of every error raised by ``pipeline``."""


class InvalidInput(PipelineError, ValueError):
    """Raised when arguments or input data are invalid; never worth a retry."""


class StopRequested(PipelineError):
    """Raised when ``should_stop()`` asks long work to stop (cancellation or deadline)."""


class DatasetFileError(InvalidInput):
    """Raised when a dataset file is missing, truncated, or not in the expected layout."""


class MatFileError(InvalidInput):
    """Raised when a MATLAB file cannot be read or holds no usable signal."""


class UnsafePath(InvalidInput):
    """Raised when a path escapes the root it must stay under."""


class CheckpointError(InvalidInput):
    """Raised when a checkpoint is missing, corrupt, or holds objects it must not."""


class ParityError(PipelineError):
    """Raised when an exported model's outputs differ from the original beyond tolerance."""
