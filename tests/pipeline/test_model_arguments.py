"""The declared model arguments are the constructors' signatures, and checking them loads no torch."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest

from pipeline.models.arguments import ARGUMENTS
from pipeline.models.registry import MODEL_KEYS, model_constructor


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_declared_arguments_equal_the_constructor_signature(key):
    constructor = model_constructor(key)
    hints = typing.get_type_hints(constructor.__init__ if inspect.isclass(constructor) else constructor)
    signature = {
        name: (hints[name], p.default is p.empty, None if p.default is p.empty else p.default)
        for name, p in inspect.signature(constructor).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    declared = {name: (a.hint, a.required, a.default) for name, a in ARGUMENTS[key].items()}
    assert declared == signature


def test_a_check_without_a_build_imports_neither_torch_nor_sklearn():
    code = ("import sys; from pipeline.models import validate_model_args; "
            "validate_model_args('cnn1d', {'width': 16}, build=False); validate_model_args('rf', {}, build=False); "
            "print(sorted({'torch', 'sklearn'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
