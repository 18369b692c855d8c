"""Every model key, its constructor, and validation of constructor arguments.

Constructors are imported only when needed, so importing this module stays cheap (no torch,
no sklearn). ``validate_model_args`` checks names, types and simple ranges against
``ARGUMENTS`` (the constructors' signatures, declared without torch), then builds the model
once (deep models on torch's ``meta`` device, which allocates nothing) so that every
constructor-level check runs before a job starts.

The deep keys come in two kinds. ``DEEP_KEYS`` are the built-in architectures: each builds
from its default arguments, so anything that enumerates models (tests, benchmarks,
comparisons) can use them as they are. ``SEARCHED_KEYS`` are deep models whose structure a
search found (``nas_net``: the architecture a NAS campaign recorded); their structural
arguments have no default, so a build without them is refused. ``is_deep`` covers both.
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Callable
from typing import Any

from pipeline.errors import InvalidInput
from pipeline.models.arguments import ARGUMENTS, type_name

__all__ = [
    "CLASSICAL_KEYS",
    "DEEP_KEYS",
    "MODEL_KEYS",
    "SEARCHED_KEYS",
    "args_for_data",
    "build_model",
    "count_parameters",
    "is_deep",
    "model_constructor",
    "validate_model_args",
]

_CONSTRUCTORS: dict[str, str] = {
    "cnn1d": "pipeline.models.cnn1d:CNN1D",
    "resnet18": "pipeline.models.resnet1d:ResNet1D",
    "cnn_lstm": "pipeline.models.cnn_lstm:CNNLSTM",
    "attention_cnn": "pipeline.models.attention_cnn:AttentionCNN",
    "signal_transformer": "pipeline.models.transformer:SignalTransformer",
    "rf": "pipeline.models.classical:random_forest",
    "svm": "pipeline.models.classical:svm",
    "gbm": "pipeline.models.classical:gradient_boosting",
    "nas_net": "pipeline.nas.model:NasNet",
}
DEEP_KEYS: tuple[str, ...] = (
    "cnn1d",
    "resnet18",
    "cnn_lstm",
    "attention_cnn",
    "signal_transformer",
)
SEARCHED_KEYS: tuple[str, ...] = ("nas_net",)
CLASSICAL_KEYS: tuple[str, ...] = ("rf", "svm", "gbm")
MODEL_KEYS: tuple[str, ...] = DEEP_KEYS + SEARCHED_KEYS + CLASSICAL_KEYS

# Arguments that may be zero or negative; every other int/float argument must be positive.
_NON_NEGATIVE = {"dropout", "random_state"}


def is_deep(key: str) -> bool:
    """Return true for a PyTorch model key (built-in or searched), false for a classical one."""
    _check_key(key)
    return key in DEEP_KEYS or key in SEARCHED_KEYS


def _check_key(key: str) -> None:
    if key not in _CONSTRUCTORS:
        raise InvalidInput(f"unknown model {key!r}; valid models: {', '.join(MODEL_KEYS)}")


def model_constructor(key: str) -> Callable[..., Any]:
    """Return the class or factory that builds model ``key``."""
    _check_key(key)
    module, name = _CONSTRUCTORS[key].split(":")
    return getattr(importlib.import_module(module), name)


def _accepts(value: Any, hint: Any) -> tuple[bool, Any]:
    """Return (ok, converted value) for ``value`` against a simple type hint."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, converted = _accepts(value, option)
            if ok:
                return True, converted
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if hint is list or typing.get_origin(hint) is list:
        return isinstance(value, list), value  # the constructor checks what the list holds
    return False, value


def validate_model_args(key: str, args: dict[str, Any] | None, *, build: bool = True) -> dict[str, Any]:
    """Check ``args`` for model ``key`` and return them completed with the defaults.

    Names, types, required arguments and simple ranges come from ``ARGUMENTS`` (no torch);
    with ``build`` the model is then built once (deep models on the ``meta`` device) so every
    constructor-level check runs too. A producer checks with ``build=False`` when it sends;
    the worker builds before a job starts.

    Raises:
        InvalidInput: unknown key, unknown argument, wrong type, out-of-range value, or a
            combination the constructor refuses; the message names the argument.
    """
    _check_key(key)
    params = ARGUMENTS[key]
    args = dict(args or {})
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise InvalidInput(
            f"unknown argument(s) {', '.join(unknown)} for model {key!r}; "
            f"valid: {', '.join(params)}"
        )
    missing = [name for name, p in params.items() if p.required and name not in args]
    if missing:
        why = "the architecture a NAS campaign recorded" if key in SEARCHED_KEYS else "they have no default"
        raise InvalidInput(f"model {key!r} needs argument(s) {', '.join(missing)} ({why})")
    resolved: dict[str, Any] = {}
    for name, param in params.items():
        value = args.get(name, param.default)
        ok, value = _accepts(value, param.hint)
        if not ok:
            raise InvalidInput(
                f"argument {name!r} of model {key!r} must be {type_name(param.hint)}, "
                f"got {args.get(name)!r}"
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low_ok = value >= 0 if name in _NON_NEGATIVE else value > 0
            if not low_ok or (name == "num_classes" and value < 2):
                raise InvalidInput(f"argument {name!r} of model {key!r} is out of range: {value!r}")
        resolved[name] = value
    if build:
        _trial_build(key, model_constructor(key), resolved)
    return resolved


def _trial_build(key: str, constructor: Callable[..., Any], args: dict[str, Any]) -> None:
    try:
        if is_deep(key):
            import torch

            with torch.device("meta"):
                constructor(**args)
        else:
            constructor(**args)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid arguments for model {key!r}: {exc}") from exc


def args_for_data(key: str, args: dict[str, Any] | None, num_classes: int,
                  in_channels: int) -> dict[str, Any]:
    """A deep model's arguments with its classes and input channels taken from the data.

    Values the caller gave are kept (a mismatch is then refused where the data is checked);
    classical models take neither, so their arguments pass unchanged.
    """
    args = dict(args or {})
    if is_deep(key):
        args.setdefault("num_classes", int(num_classes))
        args.setdefault("in_channels", int(in_channels))
    return args


def build_model(key: str, args: dict[str, Any] | None = None) -> Any:
    """Validate ``args`` and return a fresh ``nn.Module`` or sklearn ``Pipeline`` for ``key``."""
    return model_constructor(key)(**validate_model_args(key, args))


def count_parameters(model: Any) -> int:
    """Return the trainable parameter count of a torch model (0 for a classical model)."""
    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return 0
    return int(sum(p.numel() for p in parameters() if p.requires_grad))
