"""Conv1d-BatchNorm1d fusion: the batch norm is folded into the convolution and removed.

``torch.ao.quantization.fuse_modules`` keeps the module count (it leaves ``Identity`` in
place of each fused module and wraps Conv+ReLU in an intrinsic container), and it needs
each pair named by hand. Here the folding is done directly, in eval mode:

    w' = w * gamma / sqrt(var + eps)        b' = (b - mean) * gamma / sqrt(var + eps) + beta

A BatchNorm1d right after a Conv1d inside an ``nn.Sequential`` is dropped from it; each
``BasicBlock1D`` of the ResNet becomes a ``FusedBasicBlock1D`` (two biased convolutions, no
batch norm). The ReLU stays a separate (parameter-free) module: it is not a pointwise
op that can be folded into weights.

``fuse_conv_bn`` is deterministic in structure, so a fused checkpoint is loaded by building
the model, fusing it, then loading the saved weights (see ``pipeline.deploy.loading``).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.resnet1d import BasicBlock1D

__all__ = ["FusedBasicBlock1D", "count_modules", "fold_batchnorm", "fuse_conv_bn"]


def count_modules(model: nn.Module, kind: type[nn.Module] = nn.Module) -> int:
    """Return how many modules of ``kind`` (every module by default, the root included)."""
    return sum(isinstance(module, kind) for module in model.modules())


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> nn.Conv1d:
    """Return a new biased Conv1d computing ``bn(conv(x))`` with ``bn``'s running statistics."""
    mean, var = bn.running_mean, bn.running_var
    if mean is None or var is None:
        raise ValueError("cannot fold a BatchNorm1d that keeps no running statistics")
    fused = nn.Conv1d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size[0],
        stride=conv.stride[0],
        padding=conv.padding if isinstance(conv.padding, str) else conv.padding[0],
        dilation=conv.dilation[0],
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1))
    assert fused.bias is not None  # built with bias=True
    fused.bias.copy_((bias - mean) * scale + beta)
    return fused


class FusedBasicBlock1D(nn.Module):
    """A ``BasicBlock1D`` whose batch norms are folded into its convolutions."""

    def __init__(self, block: BasicBlock1D) -> None:
        super().__init__()
        self.conv1 = fold_batchnorm(block.conv1, block.bn1)
        self.conv2 = fold_batchnorm(block.conv2, block.bn2)
        self.relu = block.relu
        self.shortcut = block.shortcut  # already fused by the caller when it is a Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return self.relu(self.conv2(self.relu(self.conv1(x))) + self.shortcut(x))


def _fuse_sequential(seq: nn.Sequential) -> int:
    children = list(seq.children())
    kept: list[nn.Module] = []
    folded = 0
    index = 0
    while index < len(children):
        module = children[index]
        after = children[index + 1] if index + 1 < len(children) else None
        if isinstance(module, nn.Conv1d) and isinstance(after, nn.BatchNorm1d):
            kept.append(fold_batchnorm(module, after))
            folded += 1
            index += 2
            continue
        kept.append(module)
        index += 1
    if folded:
        for name in list(seq._modules):
            del seq._modules[name]
        for position, module in enumerate(kept):
            seq.add_module(str(position), module)
    return folded


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold every Conv1d-BatchNorm1d pair of ``model`` in place; return how many were folded.

    The model must be in eval mode (folding uses the running statistics).

    Raises:
        ValueError: the model is in training mode.
    """
    if model.training:
        raise ValueError("fuse_conv_bn needs a model in eval mode")
    folded = 0
    # Children first, so a block's shortcut Sequential is fused before the block itself.
    for module in list(model.modules())[::-1]:
        if isinstance(module, nn.Sequential):
            folded += _fuse_sequential(module)
        for name, child in list(module.named_children()):
            if isinstance(child, BasicBlock1D):
                setattr(module, name, FusedBasicBlock1D(child))
                folded += 2
    return folded
