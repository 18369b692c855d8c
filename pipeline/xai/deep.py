"""Gradient methods for PyTorch models: SHAP (expected gradients), Integrated Gradients, Grad-CAM.

All three explain the target class's **logit** (the softmax couples every class and
saturates, which flattens gradients); the perturbation methods in ``pipeline.xai.segments``
explain probabilities. The model must be in eval mode; it is never switched to training
mode nor modified, so one cached model can serve several threads at once (Grad-CAM's hook
only acts on the thread that installed it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import InvalidInput, MethodNotApplicable
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.xai.result import Attribution

__all__ = ["check_channels", "gradcam", "integrated_gradients", "logits", "predict_proba", "shap_gradient"]


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _tensor(windows: np.ndarray, device: torch.device) -> torch.Tensor:
    """One-channel ``[n, L]`` (or ``[L]``) or multi-channel ``[n, C, L]`` windows -> float32
    ``[n, C, L]`` tensor on ``device`` (a single multi-channel window goes as ``[1, C, L]``)."""
    x = torch.as_tensor(np.ascontiguousarray(windows, dtype=np.float32), device=device)
    return x if x.ndim == 3 else x.reshape(-1, 1, x.shape[-1])


def check_channels(model: nn.Module, window: np.ndarray) -> None:
    """Raise InvalidInput unless ``window`` (``[L]`` or ``[C, L]``) has the channels the model
    takes: its first Conv1d's (every deep key starts with one; a model without is not checked)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv1d)), None)
    given = window.shape[0] if window.ndim == 2 else 1
    if first is not None and first.in_channels != given:
        raise InvalidInput(f"the model takes windows of {first.in_channels} channel(s), this one has {given}")


@contextmanager
def _grad_mode() -> Iterator[None]:
    # cuDNN refuses RNN backward in eval mode; the plain kernels do not (cnn_lstm on CUDA).
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        yield


@torch.no_grad()
def logits(model: nn.Module, windows: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits ``[n, K]`` (float64) of ``windows [n, L]`` or ``[n, C, L]``, batch by batch."""
    device = _device(model)
    out = [
        model(_tensor(windows[start : start + batch_size], device)).double().cpu()
        for start in range(0, len(windows), batch_size)
    ]
    return torch.cat(out).numpy()


def predict_proba(model: nn.Module, windows: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Softmax probabilities ``[n, K]`` (float64) of ``windows [n, L]`` or ``[n, C, L]``."""
    z = logits(model, windows, batch_size)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


class _TargetLogit(nn.Module):
    """The target class's logit as a one-output model (what shap's explainer differentiates)."""

    def __init__(self, model: nn.Module, target: int) -> None:
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.target : self.target + 1]


def _expected_gradients_round(
    model: nn.Module,
    x: torch.Tensor,
    background: torch.Tensor,
    target: int,
    samples: int,
    batch_size: int,
    rng: np.random.Generator,
    should_stop: StopFn,
    on_batch: ProgressFn,
) -> np.ndarray:
    """One stratified pass of expected gradients: every background window gets its share of
    ``samples`` path points (at least one), spread over [0, 1] one per equal stratum.

    Each background is weighted equally whatever its share, so the pass estimates
    E_b[∫ ∇f(b + α(x − b))·(x − b) dα] with no background-sampling noise at all; what is
    left is the quadrature error along each path.
    """
    n_bg = background.shape[0]
    samples = max(samples, n_bg)
    counts = np.full(n_bg, samples // n_bg)
    counts[rng.permutation(n_bg)[: samples % n_bg]] += 1
    index = np.repeat(np.arange(n_bg), counts)
    stratum = np.concatenate([np.arange(k) for k in counts])
    alphas = (stratum + rng.random(samples)) / counts[index]
    weights = 1.0 / (n_bg * counts[index])
    total = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)  # [C, L]
    for start in range(0, samples, batch_size):
        check_stop(should_stop)
        rows = torch.as_tensor(index[start : start + batch_size], device=x.device)
        a = torch.as_tensor(
            alphas[start : start + batch_size], dtype=x.dtype, device=x.device
        ).view(-1, 1, 1)
        w = torch.as_tensor(
            weights[start : start + batch_size], dtype=torch.float64, device=x.device
        )
        base = background[rows]
        points = (base + a * (x - base)).requires_grad_(True)
        (grad,) = torch.autograd.grad(model(points)[:, target].sum(), points)
        total += (w.view(-1, 1, 1) * (grad * (x - base)).double()).sum(0)
        on_batch(min(start + batch_size, samples) / samples, "expected gradients")
    return total.cpu().numpy()


def shap_gradient(
    model: nn.Module,
    window: np.ndarray,
    target: int,
    background: np.ndarray,
    n_samples: int = 200,
    batch_size: int = 32,
    seed: int = 0,
    tolerance: float = 0.05,
    max_samples: int = 3000,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> Attribution:
    """Gradient SHAP (expected gradients) of the target logit over ``background``, with a
    recorded additivity (convergence) delta. ``window`` is ``[L]`` or ``[C, L]`` and
    ``background`` ``[n, L]`` or ``[n, C, L]``; the attributions have the window's shape.

    The estimand is ``shap.GradientExplainer``'s: the mean over background windows b and
    α ~ U(0, 1) of ∇f(b + α(x − b))·(x − b). shap draws b and α at random for each sample,
    which left additivity 3–43 % off at 200 samples; here every background window gets an
    equal share of each pass and its α are stratified, so the only error left is the
    quadrature along each path, which shrinks faster than 1/√samples. A pass of ``n_samples``
    points (at least one per background window) is redone with twice as many points per
    path, until the relative delta is at most ``tolerance`` or the next pass would take the
    total past ``max_samples``; the finest pass is the result.

    ``extra`` holds ``shap_base_value`` (mean background logit), ``shap_gap`` (f(x) − base −
    Σ attributions), ``shap_relative_delta`` (|gap| / |f(x) − base|), ``shap_samples``,
    (of the result's pass), ``shap_samples_total``, ``shap_converged`` and, when not
    converged, a ``warning`` saying so.
    """
    device = _device(model)
    background_t = _tensor(background, device)
    x = _tensor(window[None], device)
    base = float(logits(model, background, batch_size)[:, target].mean())
    f_x = float(logits(model, window[None])[0, target])
    size = max(n_samples, len(background))
    used = 0
    ceiling = max(max_samples, size)  # progress runs to 1.0 at the most samples it may take
    with _grad_mode():
        while True:

            def batch_progress(
                fraction: float, status: str, _used: int = used, _size: int = size, **_: Any
            ) -> None:
                samples = _used + fraction * _size
                on_progress(min(samples / ceiling, 1.0), status, samples=int(samples))

            rng = np.random.default_rng([seed, used])
            attributions = _expected_gradients_round(
                model, x, background_t, target, size, batch_size, rng, should_stop, batch_progress
            )
            used += size
            gap = f_x - base - float(attributions.sum())
            relative = abs(gap) / max(abs(f_x - base), 1e-12)
            if relative <= tolerance or used + 2 * size > max_samples:
                break
            size *= 2
    extra: dict[str, Any] = {
        "output": "logit",
        "explainer": "expected gradients (stratified)",
        "shap_base_value": base,
        "shap_gap": gap,
        "shap_relative_delta": relative,
        "shap_samples": size,
        "shap_samples_total": used,
        "shap_converged": relative <= tolerance,
        "tolerance": float(tolerance),
        "background_size": len(background),
    }
    if not extra["shap_converged"]:
        extra["warning"] = (
            f"additivity not reached: base + sum of attributions misses the logit by "
            f"{100 * relative:.1f} % (tolerance {100 * tolerance:g} %) after {extra['shap_samples']} "
            f"samples; raise max_samples or n_samples"
        )
    return Attribution(attributions.reshape(window.shape), extra)


def integrated_gradients(
    model: nn.Module,
    window: np.ndarray,
    target: int,
    n_steps: int = 64,
    batch_size: int = 16,
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> Attribution:
    """Integrated Gradients of the target logit from a zero baseline.

    The path integral uses Gauss-Legendre points on [0, 1] (as Captum's default). Returns
    ``ig_delta`` = sum(attributions) − (F(x) − F(0)) (completeness error) and its ratio to
    |F(x) − F(0)| as ``ig_relative_delta``. ``window`` is ``[L]`` or ``[C, L]``; the
    attributions have its shape.
    """
    device = _device(model)
    x = _tensor(window[None], device)
    baseline = torch.zeros_like(x)
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    alphas, weights = (nodes + 1) / 2, weights / 2
    grad_sum = torch.zeros_like(x[0], dtype=torch.float64)  # [C, L]
    with _grad_mode():
        for start in range(0, n_steps, batch_size):
            check_stop(should_stop)
            a = torch.as_tensor(alphas[start : start + batch_size], dtype=x.dtype, device=device)
            w = torch.as_tensor(
                weights[start : start + batch_size], dtype=torch.float64, device=device
            )
            points = (baseline + a.view(-1, 1, 1) * (x - baseline)).requires_grad_(True)
            score = model(points)[:, target].sum()
            (grad,) = torch.autograd.grad(score, points)
            grad_sum += (w.view(-1, 1, 1) * grad.double()).sum(0)
            done = min(start + batch_size, n_steps)
            on_progress(done / n_steps, "integrating gradients", steps=done)
    attributions = ((x - baseline)[0].double() * grad_sum).cpu().numpy().reshape(window.shape)
    with torch.no_grad():
        f = model(torch.cat([x, baseline]))[:, target].double().cpu().numpy()
    delta = float(attributions.sum() - (f[0] - f[1]))
    extra = {
        "output": "logit",
        "baseline": "zero",
        "ig_delta": delta,
        "ig_relative_delta": abs(delta) / max(abs(float(f[0] - f[1])), 1e-12),
        "f_x": float(f[0]),
        "f_baseline": float(f[1]),
        "n_steps": int(n_steps),
    }
    return Attribution(attributions, extra)


def _find_conv(model: nn.Module, layer: str) -> tuple[str, nn.Conv1d]:
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv1d)]
    if layer:
        for name, module in convs:
            if name == layer:
                return name, module
        raise MethodNotApplicable(
            f"layer {layer!r} is not a Conv1d of this model; Conv1d layers: "
            f"{', '.join(n for n, _ in convs) or '(none)'}"
        )
    if not convs:
        raise MethodNotApplicable("Grad-CAM needs a Conv1d layer and this model has none")
    return convs[-1]  # named_modules() follows registration order: the last one is deepest


def gradcam(
    model: nn.Module,
    window: np.ndarray,
    target: int,
    layer: str = "",
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> Attribution:
    """Grad-CAM: ReLU(Σ_k mean_t(∂logit/∂A_k) · A_k) on a Conv1d's output A, upsampled
    linearly to the signal length. Values are ≥ 0, in the logit's units (not normalised).
    A ``[C, L]`` window gets the same map on every channel: a conv layer's output mixes the
    input channels, so Grad-CAM says when, not which sensor (``extra["channels"]``).

    Raises:
        MethodNotApplicable: the model has no Conv1d (or none named ``layer``).
    """
    name, conv = _find_conv(model, layer)
    check_stop(should_stop)
    owner = threading.get_ident()
    captured: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if threading.get_ident() != owner:  # another thread's forward on a shared model
            return None
        captured["a"] = output
        # A clone goes on, so a following in-place op cannot alter the captured activations.
        return output.clone()

    x = _tensor(window[None], _device(model))
    handle = conv.register_forward_hook(hook)
    try:
        with _grad_mode():
            score = model(x)[0, target]
            (grad,) = torch.autograd.grad(score, captured["a"])
    finally:
        handle.remove()
    activations = captured["a"].detach()[0]  # [K, T]
    weights = grad[0].mean(dim=1, keepdim=True)  # [K, 1]
    cam = torch.relu((weights * activations).sum(0))  # [T]
    upsampled = nn.functional.interpolate(
        cam.view(1, 1, -1), size=x.shape[-1], mode="linear", align_corners=False
    )[0, 0]
    on_progress(1.0, "grad-cam")
    extra = {
        "output": "logit",
        "layer": name,
        "cam_length": int(cam.numel()),
        "cam_max": float(cam.max()),
    }
    if window.ndim == 2:
        extra["channels"] = "one map shared by every channel"
    return Attribution(np.broadcast_to(upsampled.double().cpu().numpy(), window.shape).copy(), extra)
