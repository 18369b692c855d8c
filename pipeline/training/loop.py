"""Deep-model training: epochs, early stopping, best/last checkpoints, resume, test metrics.

``checkpoint_dir`` belongs to one training job. ``last.pt`` is rewritten after every epoch
with everything needed to continue (weights, optimizer, scheduler, counters, history, RNG
states); when it exists at start the run continues from it, which is how a message that is
redelivered after its worker was killed picks up where it stopped.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import InvalidInput
from pipeline.models.registry import (
    DEEP_KEYS,
    SEARCHED_KEYS,
    args_for_data,
    build_model,
    count_parameters,
    validate_model_args,
)
from pipeline.progress import ProgressFn, StopFn, check_stop, never_stop, no_progress
from pipeline.training import optim
from pipeline.training.augment import make_augmenter
from pipeline.training.checkpoint import (
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    save_training_state,
    snapshot_state,
)
from pipeline.training.config import TrainingConfig
from pipeline.training.data import BatchTimer, Split, TrainingData, iterate_batches
from pipeline.training.inference import autocast, predict_proba
from pipeline.training.metrics import (
    EpochRecord,
    TrainingResult,
    evaluate_predictions,
    save_predictions,
)

# predict_proba is re-exported: callers of train_deep evaluate with it.
__all__ = ["BEST_NAME", "LAST_NAME", "PREDICTIONS_NAME", "predict_proba", "predict_split", "train_deep"]

BEST_NAME, LAST_NAME, PREDICTIONS_NAME = "best.pt", "last.pt", "test_predictions.npz"
STOP_CHECK_BATCHES = 50  # also check should_stop() inside long epochs
_PROGRESS_METRICS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "lr")


def predict_split(model: nn.Module, split: Split, batch_size: int, device: torch.device | str = "cpu",
                  precision: str = "fp32") -> np.ndarray:
    """``predict_proba`` over a whole split, a group of records at a time for a stored one."""
    return np.concatenate([predict_proba(model, windows, batch_size, device, precision)
                           for windows, _ in split.groups(None)])


def _evaluate(
    model: nn.Module, split: Split, config: TrainingConfig, device: torch.device, precision: str
) -> tuple[float, float]:
    probs = predict_split(model, split, config.batch_size, device, precision)
    labels = split.labels
    loss = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()
    return float(loss), float((probs.argmax(1) == labels).mean())


def _seed_everything(seed: int, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def train_deep(
    model_key: str,
    model_args: dict[str, Any] | None,
    config: TrainingConfig | dict[str, Any] | None,
    data: TrainingData,
    checkpoint_dir: str | os.PathLike[str],
    on_progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainingResult:
    """Train ``model_key`` on ``data``, keep the best weights by validation accuracy, test them.

    Per epoch: ``should_stop()`` is checked (also every 50 batches), ``last.pt`` is written,
    then ``on_progress(epoch / epochs, ...)`` with the epoch's metrics and ``on_epoch(record)``
    are called. After a crash the last epoch's ``on_epoch`` may be called again on resume,
    so the caller keys its history rows by epoch.

    Raises:
        InvalidInput: bad model key/arguments/config, inconsistent data, CUDA requested but absent.
        CheckpointError: ``last.pt`` is unreadable or belongs to another model or config.
        StopRequested: ``should_stop()`` answered true; ``last.pt`` keeps the last full epoch.
    """
    started = time.perf_counter()
    if model_key not in DEEP_KEYS + SEARCHED_KEYS:
        raise InvalidInput(f"{model_key!r} is not a deep model; valid: {', '.join(DEEP_KEYS + SEARCHED_KEYS)}")
    config = config if isinstance(config, TrainingConfig) else TrainingConfig.from_dict(config)
    args = validate_model_args(
        model_key, args_for_data(model_key, model_args, len(data.class_keys), data.in_channels))
    if args["num_classes"] != len(data.class_keys):
        raise InvalidInput(
            f"model has num_classes={args['num_classes']} but the data has "
            f"{len(data.class_keys)} classes"
        )
    if args["in_channels"] != data.in_channels:
        raise InvalidInput(f"model has in_channels={args['in_channels']} but the data's windows "
                           f"have {data.in_channels} channel(s)")
    data.validate()
    device = optim.resolve_device(config)
    precision = optim.resolve_precision(config, device)
    directory = Path(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    best_path, last_path = directory / BEST_NAME, directory / LAST_NAME

    _seed_everything(config.seed, device)
    model = build_model(model_key, args).to(device)
    optimizer = optim.make_optimizer(model, config)
    ema = optim.make_ema(model, config)
    # What is validated, kept as best.pt and tested: the weight average when there is one.
    scored = ema.module if ema is not None else model
    scheduler = optim.make_scheduler(optimizer, config)
    # Loss scaling is for fp16 only: bf16 has fp32's range.
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    identity = {"model_key": model_key, "model_args": args, "config": config.to_dict()}
    state: dict[str, Any] = {
        "epoch": 0,
        "best_acc": -1.0,
        "best_loss": float("inf"),
        "best_epoch": 0,
        "patience": 0,
        "finished": False,
        "history": [],
    }
    resumed_from = None
    if last_path.exists():
        state = load_training_state(
            last_path, identity, device, model, optimizer, scheduler, scaler, keys=tuple(state), ema=ema
        )
        resumed_from = state["epoch"]
        if on_epoch is not None and state["history"]:
            on_epoch(EpochRecord(**state["history"][-1]))

    trained_windows, train_time, wait_time = 0, 0.0, 0.0
    stopped_early = state["finished"] and state["epoch"] < config.epochs
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["finished"]:
            break
        check_stop(should_stop)
        epoch_start = time.perf_counter()
        train_loss, train_acc, seen, wait_s = _train_epoch(
            model, data.train, config, epoch, device, precision, optimizer, scaler, should_stop, ema
        )
        train_seconds = time.perf_counter() - epoch_start
        trained_windows += seen
        train_time += train_seconds
        wait_time += wait_s
        val_loss, val_acc = _evaluate(scored, data.val, config, device, precision)
        lr = optim.current_lr(optimizer)
        optim.step_scheduler(scheduler, val_acc)
        improved = val_acc > state["best_acc"] or (
            val_acc == state["best_acc"] and val_loss < state["best_loss"]
        )
        if improved:
            state.update(best_acc=val_acc, best_loss=val_loss, best_epoch=epoch, patience=0)
            save_checkpoint(
                best_path,
                snapshot_state(scored),
                model_key,
                args,
                data.class_keys,
                config.to_dict(),
                extra={"epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss,
                       "data": data.describe()},
            )
        else:
            state["patience"] += 1
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            train_acc=train_acc,
            val_acc=val_acc,
            lr=lr,
            duration_s=time.perf_counter() - epoch_start,
            data_wait_fraction=wait_s / max(train_seconds, 1e-9),
            is_best=improved,
        )
        stopped_early = (
            state["patience"] >= config.early_stopping_patience and epoch < config.epochs
        )
        state.update(
            epoch=epoch,
            history=state["history"] + [record.to_dict()],
            finished=stopped_early or epoch == config.epochs,
        )
        save_training_state(last_path, identity, state, model, optimizer, scheduler, scaler, ema)
        metrics = {name: getattr(record, name) for name in _PROGRESS_METRICS}
        on_progress(epoch / config.epochs, f"epoch {epoch}/{config.epochs}", **metrics)
        if on_epoch is not None:
            on_epoch(record)

    # best.pt records its own epoch and score: after a crash between writing best.pt and
    # last.pt they can be newer than the counters restored from last.pt.
    best_model, best_meta = load_checkpoint(best_path, map_location=device)
    probs = predict_split(best_model, data.test, config.batch_size, device, precision)
    test = evaluate_predictions(probs, data.test.labels, data.test.record_ids, data.class_keys)
    predictions_path = save_predictions(
        directory / PREDICTIONS_NAME, probs, data.test.labels, data.test.record_ids
    )
    on_progress(
        1.0,
        "evaluated on test",
        test_accuracy=test.window_accuracy,
        test_record_accuracy=test.record_accuracy,
    )
    return TrainingResult(
        model_key=model_key,
        model_args=args,
        config=config.to_dict(),
        class_keys=list(data.class_keys),
        epochs_run=state["epoch"],
        best_epoch=int(best_meta["extra"]["epoch"]),
        best_val_accuracy=float(best_meta["extra"]["val_accuracy"]),
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        history=list(state["history"]),
        test=test.to_dict(),
        parameter_count=count_parameters(model),
        duration_s=time.perf_counter() - started,
        train_windows_per_s=trained_windows / train_time if train_time else 0.0,
        data_wait_fraction=wait_time / train_time if train_time else 0.0,
        device=str(device),
        mixed_precision=precision != "fp32",
        precision=precision,
        data_stored=data.stored,
        model_path=str(best_path),
        model_sha256=None,
        last_checkpoint_path=str(last_path),
        predictions_path=str(predictions_path),
    )


def _train_epoch(
    model: nn.Module,
    split: Split,
    config: TrainingConfig,
    epoch: int,
    device: torch.device,
    precision: str,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    should_stop: StopFn,
    ema: torch.optim.swa_utils.AveragedModel | None,
) -> tuple[float, float, int, float]:
    """Run one epoch, folding each step into ``ema`` if given; return (mean loss, accuracy,
    windows seen, seconds waiting for data)."""
    timer = BatchTimer()
    augment = make_augmenter(config, epoch, device)
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    # The order depends on (seed, epoch) only, so a resumed epoch sees the same batches.
    batches = iterate_batches(
        split,
        config.batch_size,
        shuffle=True,
        seed=config.seed * 100_003 + epoch,
        timer=timer,
        device=str(device),
        num_workers=config.num_workers,
        drop_single=True,
    )
    for step, (x, y) in enumerate(batches, start=1):
        if step % STOP_CHECK_BATCHES == 0:
            check_stop(should_stop)
        if augment is not None:
            x = augment(x)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return loss_sum / max(seen, 1), correct / max(seen, 1), seen, timer.wait_s
