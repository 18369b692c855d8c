"""Shared fixtures: a tiny real dataset, tiny checkpoints of every deep model, their ONNX.

Models are tiny (width 8) and windows short (1024 samples, cut from the dataset's 1 s
windows by a reshape, which keeps them views of the dataset array), on one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.datasets.generate import generate_dataset
from pipeline.datasets.hdf5 import read_windows
from pipeline.deploy.export import ExportResult, export_onnx
from pipeline.domain import CLASS_KEYS
from pipeline.models import DEEP_KEYS, build_model
from pipeline.signals import GeneratorConfig
from pipeline.training.checkpoint import save_checkpoint

torch.set_num_threads(1)

LENGTH = 1024
TINY_ARGS: dict[str, dict] = {
    "cnn1d": {"width": 8, "depth": 2},
    "resnet18": {"base_width": 8},
    "cnn_lstm": {"width": 8, "hidden_size": 8},
    "attention_cnn": {"width": 8, "depth": 2},
    "signal_transformer": {
        "d_model": 16,
        "nhead": 2,
        "num_layers": 1,
        "dim_feedforward": 32,
        "patch_size": 128,
    },
}
assert set(TINY_ARGS) == set(DEEP_KEYS)


def short(windows: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut 1 s windows into 1024-sample windows (a view of the same memory) with labels."""
    per = windows.shape[1] // LENGTH
    return windows.reshape(-1, LENGTH), np.repeat(labels, per)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A real generated dataset file: 3 records per class, one per class in each split."""
    out = tmp_path_factory.mktemp("deploy-data")
    made = generate_dataset(GeneratorConfig(records_per_class=3, seed=11), out, "tiny", workers=1)
    return Path(made.hdf5_path)


@pytest.fixture(scope="session")
def train_windows(dataset) -> np.ndarray:
    """The training split's 1 s windows exactly as ``read_windows`` returns them."""
    return read_windows(dataset, "train")[0]


@pytest.fixture(scope="session")
def val(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Short validation windows and labels (every class)."""
    windows, labels, _ = read_windows(dataset, "val")
    return short(windows, labels)


def make_checkpoint(key: str, path: Path, seed: int = 0) -> Path:
    """Save a tiny model of ``key`` with seeded weights and non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    model = build_model(key, TINY_ARGS[key]).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return save_checkpoint(path, model, key, TINY_ARGS[key], CLASS_KEYS, {"seed": seed})


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One tiny checkpoint per deep model key."""
    out = tmp_path_factory.mktemp("deploy-ckpt")
    return {key: make_checkpoint(key, out / f"{key}.pt") for key in DEEP_KEYS}


@pytest.fixture(scope="session")
def exported(tmp_path_factory, checkpoints, val) -> Callable[[str], ExportResult]:
    """Export a key's checkpoint at the default opset once per session (it takes seconds)."""
    out = tmp_path_factory.mktemp("deploy-onnx")
    cache: dict[str, ExportResult] = {}

    def get(key: str) -> ExportResult:
        if key not in cache:
            cache[key] = export_onnx(checkpoints[key], out / f"{key}.onnx", val[0])
        return cache[key]

    return get
