"""Pruning (permanent, validated) and Conv-BN fusion (fewer modules, same outputs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.deploy._common import torch_logits
from pipeline.deploy.export import export_onnx
from pipeline.deploy.fusion import count_modules, fuse_conv_bn
from pipeline.deploy.loading import load_model
from pipeline.deploy.optimize import PRUNE_METHODS, optimize_model
from pipeline.errors import CheckpointError, InvalidInput
from pipeline.training.checkpoint import load_checkpoint, safe_load


@pytest.mark.parametrize("key", ["cnn1d", "resnet18", "cnn_lstm", "attention_cnn"])
def test_fusion_gives_fewer_modules_and_the_same_outputs(key, checkpoints, val) -> None:
    model, _ = load_model(checkpoints[key])
    before = torch_logits(model, val[0][:64])
    modules, batchnorms = count_modules(model), count_modules(model, nn.BatchNorm1d)

    folded = fuse_conv_bn(model)

    assert folded == batchnorms > 0
    assert count_modules(model) < modules
    assert count_modules(model, nn.BatchNorm1d) == 0
    np.testing.assert_allclose(torch_logits(model, val[0][:64]), before, atol=1e-5)


def test_fusion_refuses_a_model_in_training_mode(checkpoints) -> None:
    model, _ = load_model(checkpoints["cnn1d"])
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(model.train())


@pytest.mark.parametrize("method", PRUNE_METHODS)
def test_pruning_reaches_the_amount_permanently_and_reloads(method, checkpoints, val, tmp_path):
    out = tmp_path / "opt.pt"
    result = optimize_model(checkpoints["resnet18"], out, *val, prune_method=method, amount=0.5)

    assert result.sparsity == pytest.approx(0.5, abs=0.02)
    assert result.fused and result.modules_after < result.modules_before
    assert result.batchnorms_after == 0 < result.batchnorms_before
    assert result.nonzero_parameters_after < result.parameters_after
    assert result.compressed_bytes_after < result.compressed_bytes_before
    json.dumps(result.to_dict())
    # Permanent: plain weights with zeros, no masks, loadable with weights_only.
    state = safe_load(out)["state_dict"]
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    model, meta = load_model(out)
    assert meta["extra"]["deploy"]["pruning"][0] == {"method": method, "amount": 0.5, "seed": 0}
    logits = torch_logits(model, val[0])
    assert (logits.argmax(1) == val[1]).mean() == pytest.approx(result.accuracy_after)


def test_structured_pruning_zeroes_whole_output_channels(checkpoints, val, tmp_path) -> None:
    out = tmp_path / "opt.pt"
    optimize_model(checkpoints["cnn1d"], out, *val, prune_method="ln_structured", amount=0.5)

    model, _ = load_model(out)
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv1d)):
        dead = (conv.weight.flatten(1) == 0).all(dim=1)
        assert dead.sum() == round(0.5 * conv.out_channels)


@pytest.mark.parametrize("amount", [-0.1, 0.96, 1.0, float("nan"), "0.3", True])
def test_pruning_amount_outside_0_to_0_95_is_refused(amount, val, tmp_path) -> None:
    with pytest.raises(InvalidInput, match="amount"):
        optimize_model(tmp_path / "missing.pt", tmp_path / "o.pt", *val, amount=amount)


def test_unknown_pruning_method_is_refused(val, tmp_path) -> None:
    with pytest.raises(InvalidInput, match="pruning method"):
        optimize_model(tmp_path / "missing.pt", tmp_path / "o.pt", *val, prune_method="magic")


def test_optimize_without_checkpoint_raises_checkpoint_error(val, tmp_path) -> None:
    with pytest.raises(CheckpointError):
        optimize_model(tmp_path / "missing.pt", tmp_path / "o.pt", *val)


def test_random_pruning_with_the_same_seed_gives_the_same_weights(checkpoints, val, tmp_path):
    def pruned(seed: int, name: str) -> dict[str, torch.Tensor]:
        path = tmp_path / name
        optimize_model(
            checkpoints["cnn1d"],
            path,
            *val,
            prune_method="random_unstructured",
            amount=0.4,
            seed=seed,
            fuse=False,
        )
        return safe_load(path)["state_dict"]

    first, again, other = pruned(1, "a.pt"), pruned(1, "b.pt"), pruned(2, "c.pt")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_fused_checkpoint_needs_its_flag_and_exports_with_parity(checkpoints, val, tmp_path):
    out = tmp_path / "fused.pt"
    optimize_model(checkpoints["resnet18"], out, *val, prune_method=None)

    with pytest.raises(CheckpointError):  # the plain loader cannot rebuild the fused graph
        load_checkpoint(out)
    result = export_onnx(out, tmp_path / "fused.onnx", val[0], opset=17)
    assert result.max_abs_diff <= 1e-4
