"""Errors raised by ``pipeline``: one base class and one class per failure.

``InvalidInput`` and its subclasses are bad input: the job fails at once, never retried.
``StopRequested`` means ``should_stop()`` answered true (cancel or deadline); the caller
decides which of the two it was.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DatasetFileError",
    "InvalidInput",
    "MatFileError",
    "ParityError",
    "PipelineError",
    "StopRequested",
    "UnsafePath",
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


# Notification delivery (pipeline.notify). Appended with its own __all__ entries.
__all__ += ["DeliveryRefused", "DeliveryTransient", "EventInvalid"]


class EventInvalid(InvalidInput):
    """Raised when a notification names an unknown event type or its payload fails its schema."""


class DeliveryTransient(PipelineError):
    """Raised when a channel could not deliver for a reason that may pass (timeout, 5xx, 4xx SMTP)."""


class DeliveryRefused(InvalidInput):
    """Raised when a channel refuses a delivery for good (recipient refused, 4xx webhook)."""


# Explanations (pipeline.xai). Appended with its own __all__ entries.
__all__ += ["ExplanationFileError", "MethodNotApplicable"]


class MethodNotApplicable(InvalidInput):
    """Raised when an explanation method cannot explain this model (e.g. Grad-CAM without a Conv1d)."""


class ExplanationFileError(InvalidInput):
    """Raised when a stored explanation file is missing, corrupt, or not in the expected format."""


# Deployment (pipeline.deploy). Appended with its own __all__ entries.
__all__ += ["ConversionError"]


class ConversionError(InvalidInput):
    """Raised when a model cannot be exported to ONNX, converted or quantised (the same input fails again)."""
