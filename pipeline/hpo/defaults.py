"""A default search space for every model key a campaign may tune, so ``space`` is optional.

Deep models search the learning rate, weight decay, dropout and one size per architecture;
classical ones (cheap trials on the 36 features) their usual capacity knobs and how many
MRMR features they keep. Ranges are around the DOMAIN.md training reference and the
models' own defaults, each refused value impossible (``check_campaign`` tries every bound).
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import InvalidInput

__all__ = ["DEFAULT_SPACES", "default_space"]

_LR = {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "target": "training"}
_WEIGHT_DECAY = {"type": "float", "low": 1e-6, "high": 1e-3, "log": True, "target": "training"}


def _dropout(high: float) -> dict[str, Any]:
    return {"type": "float", "low": 0.0, "high": high, "target": "model"}


def _choices(*values: Any) -> dict[str, Any]:
    return {"type": "categorical", "choices": list(values), "target": "model"}


_K_FEATURES = {"type": "int", "low": 8, "high": 36, "step": 4, "target": "model"}

DEFAULT_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "cnn1d": {"lr": _LR, "weight_decay": _WEIGHT_DECAY, "dropout": _dropout(0.5),
              "width": _choices(16, 32, 64), "kernel_size": _choices(5, 7, 9)},
    "resnet18": {"lr": _LR, "weight_decay": _WEIGHT_DECAY, "dropout": _dropout(0.5), "base_width": _choices(32, 64)},
    "cnn_lstm": {"lr": _LR, "weight_decay": _WEIGHT_DECAY, "dropout": _dropout(0.5),
                 "hidden_size": _choices(32, 64, 128)},
    "attention_cnn": {"lr": _LR, "weight_decay": _WEIGHT_DECAY, "dropout": _dropout(0.5),
                      "width": _choices(16, 32, 64)},
    "signal_transformer": {"lr": _LR, "weight_decay": _WEIGHT_DECAY, "dropout": _dropout(0.3),
                           "d_model": _choices(32, 64, 128)},
    "rf": {"n_estimators": {"type": "int", "low": 100, "high": 500, "step": 100, "target": "model"},
           "max_depth": _choices(None, 8, 16, 32),
           "min_samples_leaf": {"type": "int", "low": 1, "high": 4, "target": "model"},
           "k_features": _K_FEATURES},
    "svm": {"C": {"type": "float", "low": 0.1, "high": 100.0, "log": True, "target": "model"},
            "kernel": _choices("rbf", "linear"), "gamma": _choices("scale", "auto"), "k_features": _K_FEATURES},
    "gbm": {"max_iter": {"type": "int", "low": 50, "high": 300, "step": 50, "target": "model"},
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True, "target": "model"},
            "max_leaf_nodes": {"type": "int", "low": 15, "high": 63, "step": 16, "target": "model"},
            "k_features": _K_FEATURES},
}


def default_space(model_key: str) -> dict[str, dict[str, Any]]:
    """The JSON search space a campaign on ``model_key`` uses when it gives none.

    Raises:
        InvalidInput: ``nas_net`` (its arguments are its architecture: a NAS campaign searches
            it) or a key that names no model.
    """
    if model_key == "nas_net":
        raise InvalidInput("HPO does not tune 'nas_net': its arguments are its architecture, which a NAS "
                           "campaign searches; tune a built-in model, or train the NAS winner with train_model")
    if model_key not in DEFAULT_SPACES:
        raise InvalidInput(f"unknown model_key {model_key!r}; HPO tunes {', '.join(DEFAULT_SPACES)}")
    return {name: dict(spec) for name, spec in DEFAULT_SPACES[model_key].items()}
