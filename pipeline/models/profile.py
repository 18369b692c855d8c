"""What a model costs: multiply-accumulates of one forward pass."""

from __future__ import annotations

from typing import Any

__all__ = ["count_macs"]


def count_macs(module: Any, window_length: int, in_channels: int = 1) -> int:
    """Multiply-accumulates of one forward pass on one ``[1, C, L]`` window, Conv1d and Linear only.

    Forward hooks read each layer's real output shape, so strides, padding and pooling need
    no arithmetic here. Conv1d: ``out_elements · in_channels / groups · kernel``; Linear:
    ``out_elements · in_features``. Other work (LSTM cells, attention products, norms,
    activations) is not counted: for the CNN-style models it is a small share, and the
    figure is for ranking models, not for predicting cycles.
    """
    import torch
    from torch import nn

    total = 0

    def conv(layer: nn.Conv1d, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * (layer.in_channels // layer.groups) * layer.kernel_size[0]

    def linear(layer: nn.Linear, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * layer.in_features

    handles = []
    for layer in module.modules():
        if isinstance(layer, nn.Conv1d):
            handles.append(layer.register_forward_hook(conv))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(linear))
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, in_channels, window_length))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return int(total)
