"""The per-process model cache: one load per file version, reload when the file changes."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import CheckpointError
from pipeline.models import build_model
from pipeline.models.classical import save_classical
from pipeline.training.checkpoint import save_checkpoint
from pipeline.xai import get_model
from pipeline.xai.cache import ModelCache

ARGS = {"num_classes": 2, "width": 4, "depth": 1}


def _save(path, seed: int):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = build_model("cnn1d", ARGS)
    save_checkpoint(path, model, "cnn1d", ARGS, ["quiet", "burst"], {"epochs": 1})
    return model


def test_same_checkpoint_returns_the_same_object(tmp_path) -> None:
    _save(tmp_path / "best.pt", 0)
    cache = ModelCache()
    first = cache.get(tmp_path / "best.pt")
    assert cache.get(str(tmp_path / "best.pt")) is first
    assert cache.loads == 1
    assert first.model_key == "cnn1d" and not first.model.training
    assert first.meta["class_keys"] == ["quiet", "burst"] and len(first.sha256) == 64


def test_a_rewritten_checkpoint_is_loaded_again(tmp_path) -> None:
    _save(tmp_path / "best.pt", 0)
    cache = ModelCache()
    first = cache.get(tmp_path / "best.pt")
    newer = _save(tmp_path / "best.pt", 1)
    second = cache.get(tmp_path / "best.pt")
    assert second is not first and cache.loads == 2 and len(cache) == 1
    assert second.sha256 != first.sha256
    weight = next(iter(newer.state_dict()))
    assert torch.equal(second.model.state_dict()[weight], newer.state_dict()[weight])


def test_least_recently_used_model_is_evicted(tmp_path) -> None:
    for name in ("a.pt", "b.pt"):
        _save(tmp_path / name, 0)
    cache = ModelCache(max_entries=1)
    a = cache.get(tmp_path / "a.pt")
    cache.get(tmp_path / "b.pt")
    assert cache.get(tmp_path / "a.pt") is not a and cache.loads == 3


def test_a_sha256_mismatch_or_missing_file_is_refused(tmp_path) -> None:
    _save(tmp_path / "best.pt", 0)
    cache = ModelCache()
    with pytest.raises(CheckpointError, match="SHA-256"):
        cache.get(tmp_path / "best.pt", sha256="0" * 64)
    entry = cache.get(tmp_path / "best.pt")
    assert cache.get(tmp_path / "best.pt", sha256=entry.sha256) is entry
    with pytest.raises(CheckpointError, match="SHA-256"):
        cache.get(tmp_path / "best.pt", sha256="0" * 64)
    with pytest.raises(CheckpointError, match="not found"):
        cache.get(tmp_path / "nope.pt")


def test_classical_model_files_are_cached_too(tmp_path, classical_models) -> None:
    path = tmp_path / "model.skops"
    sha = save_classical(classical_models["rf"], path)
    loaded = get_model(path, sha256=sha)
    assert loaded.model_key == "rf" and get_model(path) is loaded
