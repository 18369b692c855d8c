"""Model architectures (PyTorch and scikit-learn) and the registry that builds them by key.

Only the registry is imported here; torch and sklearn load when a model is built.
"""

from pipeline.models.registry import (
    CLASSICAL_KEYS,
    DEEP_KEYS,
    MODEL_KEYS,
    SEARCHED_KEYS,
    build_model,
    count_parameters,
    is_deep,
    model_constructor,
    validate_model_args,
)

__all__ = [
    "CLASSICAL_KEYS",
    "DEEP_KEYS",
    "MODEL_KEYS",
    "SEARCHED_KEYS",
    "build_model",
    "count_parameters",
    "is_deep",
    "model_constructor",
    "validate_model_args",
]
