"""Deep and classical training on tiny separable signals (1,024 samples, one thread)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from pipeline.datasets.geometry import DatasetGeometry
from pipeline.errors import CheckpointError, InvalidInput, StopRequested
from pipeline.models import DEEP_KEYS, build_model
from pipeline.training import (
    EpochRecord,
    SplitData,
    TrainingConfig,
    TrainingData,
    load_training_data,
)
from pipeline.training.checkpoint import (
    FORMAT,
    load_checkpoint,
    safe_load,
    save_checkpoint,
    snapshot_state,
)
from pipeline.training.classical import train_classical
from pipeline.training.loop import predict_proba, train_deep

torch.set_num_threads(1)

L, CLASSES = 1024, 3
FREQS = (8, 24, 60)  # cycles per window: class c is a noisy sine at FREQS[c]
SMALL = {
    "cnn1d": {"width": 8, "depth": 3},
    "resnet18": {"base_width": 8},
    "cnn_lstm": {"width": 8, "hidden_size": 16},
    "attention_cnn": {"width": 8},
    "signal_transformer": {"patch_size": 64, "d_model": 32, "nhead": 4, "dim_feedforward": 64},
}
FAST = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "scheduler": "none"}
# Batch norm's running statistics need a few more steps in the deep ResNet before eval
# mode agrees with training mode; 12 steps per epoch is all this data gives.
EPOCHS = {"resnet18": 4}


def _split(records_per_class: int, seed: int, first_record: int) -> SplitData:
    rng = np.random.default_rng(seed)
    t = np.arange(L) / L
    windows, labels, records = [], [], []
    record = first_record
    for label, freq in enumerate(FREQS):
        for _ in range(records_per_class):
            for _ in range(2):  # two windows per record
                phase = rng.uniform(0, 2 * np.pi)
                windows.append(np.sin(2 * np.pi * freq * t + phase) + 0.3 * rng.standard_normal(L))
                labels.append(label)
                records.append(record)
            record += 1
    return SplitData(np.array(windows), np.array(labels), np.array(records))


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return TrainingData(
        train=_split(8, seed=0, first_record=0),
        val=_split(3, seed=1, first_record=100),
        test=_split(3, seed=2, first_record=200),
        geometry=DatasetGeometry(class_keys=("a", "b", "c"), sampling_rate=L, record_length=2 * L,
                                 window_length=L),
    )


def _args(key: str) -> dict:
    return {"num_classes": CLASSES, **SMALL[key]}


@pytest.mark.parametrize("key", DEEP_KEYS)
def test_deep_model_beats_chance_in_a_few_epochs(key: str, data: TrainingData, tmp_path) -> None:
    epochs = EPOCHS.get(key, 2)
    result = train_deep(key, _args(key), {**FAST, "epochs": epochs}, data, tmp_path)
    assert result.epochs_run == epochs
    assert [h["epoch"] for h in result.history] == list(range(1, epochs + 1))
    assert result.test["window_accuracy"] > 0.6
    assert result.test["n_records"] == 9 and result.test["n_windows"] == 18
    assert result.parameter_count > 0 and result.resumed_from_epoch is None
    json.dumps(result.to_dict(), allow_nan=False)


def test_training_reports_progress_epochs_and_artifacts(data: TrainingData, tmp_path) -> None:
    progress, epochs = [], []
    result = train_deep(
        "cnn1d",
        _args("cnn1d"),
        FAST,
        data,
        tmp_path,
        on_progress=lambda fraction, status="", **m: progress.append((fraction, m)),
        on_epoch=epochs.append,
    )
    assert [f for f, m in progress if "epoch" in m] == [0.5, 1.0]
    assert set(progress[0][1]) == {"epoch", "train_loss", "val_loss", "train_acc", "val_acc", "lr"}
    assert all(isinstance(r, EpochRecord) for r in epochs) and len(epochs) == 2
    saved = np.load(result.predictions_path)
    assert saved["probabilities"].shape == (18, CLASSES)
    np.testing.assert_array_equal(saved["predictions"], saved["probabilities"].argmax(1))
    assert len(result.test["confusion_matrix"]) == len(result.test["class_keys"]) <= CLASSES
    assert 0.0 <= result.data_wait_fraction < 1.0 and result.train_windows_per_s > 0


def test_best_checkpoint_holds_the_best_epoch_weights(data: TrainingData, tmp_path) -> None:
    result = train_deep("cnn1d", _args("cnn1d"), FAST, data, tmp_path)
    model, meta = load_checkpoint(result.model_path)
    val_acc = (predict_proba(model, data.val.windows).argmax(1) == data.val.labels).mean()
    assert val_acc == pytest.approx(result.best_val_accuracy)
    assert meta["extra"]["epoch"] == result.best_epoch and meta["model_key"] == "cnn1d"


def test_snapshot_is_a_real_copy_of_the_weights() -> None:
    model = build_model("cnn1d", _args("cnn1d"))
    best = snapshot_state(model)
    before = {k: v.clone() for k, v in best.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert all(torch.equal(best[k], before[k]) for k in best)


def test_same_seed_gives_the_same_result(data: TrainingData, tmp_path) -> None:
    first = train_deep("cnn1d", _args("cnn1d"), FAST, data, tmp_path / "a")
    second = train_deep("cnn1d", _args("cnn1d"), FAST, data, tmp_path / "b")
    strip = lambda h: [
        {k: v for k, v in r.items() if k not in ("duration_s", "data_wait_fraction")} for r in h
    ]
    assert strip(first.history) == strip(second.history)
    np.testing.assert_array_equal(
        np.load(first.predictions_path)["probabilities"],
        np.load(second.predictions_path)["probabilities"],
    )


def test_stop_request_stops_at_the_next_epoch(data: TrainingData, tmp_path) -> None:
    seen: list[EpochRecord] = []
    with pytest.raises(StopRequested):
        train_deep(
            "cnn1d",
            _args("cnn1d"),
            FAST,
            data,
            tmp_path,
            should_stop=lambda: bool(seen),
            on_epoch=seen.append,
        )
    assert [r.epoch for r in seen] == [1]
    assert safe_load(tmp_path / "last.pt")["epoch"] == 1


def test_resume_from_last_checkpoint_continues_the_epoch_counter(
    data: TrainingData, tmp_path
) -> None:
    """Given a run killed after epoch 1, when the message is redelivered, then it continues."""
    config = {**FAST, "epochs": 3}
    seen: list[EpochRecord] = []
    with pytest.raises(StopRequested):
        train_deep(
            "cnn1d",
            _args("cnn1d"),
            config,
            data,
            tmp_path / "run",
            should_stop=lambda: bool(seen),
            on_epoch=seen.append,
        )
    resumed = train_deep(
        "cnn1d", _args("cnn1d"), config, data, tmp_path / "run", on_epoch=seen.append
    )
    straight = train_deep("cnn1d", _args("cnn1d"), config, data, tmp_path / "straight")

    assert resumed.resumed_from_epoch == 1 and resumed.epochs_run == 3
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert sorted({r.epoch for r in seen}) == [1, 2, 3]  # epoch 1 may be replayed once
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]


def test_resume_refuses_a_checkpoint_of_another_model(data: TrainingData, tmp_path) -> None:
    train_deep("cnn1d", _args("cnn1d"), {**FAST, "epochs": 1}, data, tmp_path)
    with pytest.raises(CheckpointError, match="another training run"):
        train_deep("cnn_lstm", _args("cnn_lstm"), {**FAST, "epochs": 1}, data, tmp_path)


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", _args("resnet18")).eval()
    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        "resnet18",
        _args("resnet18"),
        ["a", "b", "c"],
        TrainingConfig().to_dict(),
        extra={"epoch": 3},
    )
    loaded, meta = load_checkpoint(path)
    x = torch.randn(3, 1, L)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["class_keys"] == ["a", "b", "c"] and meta["extra"] == {"epoch": 3}


class Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model_key": "cnn1d", "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="not allowed"):
        load_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", [b"", b"not a checkpoint", pickle.dumps({"format": FORMAT})])
def test_corrupt_or_missing_checkpoint_is_refused(tmp_path, content: bytes) -> None:
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"lr": "abc"}, "lr"),
        ({"lr": -1}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 2.5}, "epochs"),
        ({"mixed_precision": "yes"}, "mixed_precision"),
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"augment_shift": 0.6}, "augment_shift"),
        ({"augment_scale": 1.0}, "augment_scale"),
        ({"augment_noise": -0.1}, "augment_noise"),
    ],
)
def test_training_config_rejects_bad_options_naming_the_field(options: dict, field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        TrainingConfig.from_dict(options)


def test_training_config_round_trips_through_json() -> None:
    config = TrainingConfig.from_dict({"optimizer": "sgd", "lr": 1, "scheduler": "cosine"})
    assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "options",
    [
        {"optimizer": "sgd", "scheduler": "step"},
        {"optimizer": "adamw", "scheduler": "cosine"},
        {"scheduler": "plateau"},
    ],
)
def test_every_optimizer_and_scheduler_trains_and_resumes(
    data: TrainingData, tmp_path, options: dict
) -> None:
    config = {**FAST, **options, "epochs": 1}
    train_deep("cnn1d", _args("cnn1d"), config, data, tmp_path)
    again = train_deep("cnn1d", _args("cnn1d"), config, data, tmp_path)
    assert again.resumed_from_epoch == 1 and again.epochs_run == 1


def test_inconsistent_data_is_refused_before_training(data: TrainingData, tmp_path) -> None:
    bad = SplitData(data.val.windows, data.val.labels + 5, data.val.record_ids)
    broken = TrainingData(train=data.train, val=bad, test=data.test, geometry=data.geometry)
    with pytest.raises(InvalidInput, match="labels outside"):
        train_deep("cnn1d", _args("cnn1d"), FAST, broken, tmp_path)
    with pytest.raises(InvalidInput, match="num_classes=11"):
        train_deep("cnn1d", {"num_classes": 11}, FAST, data, tmp_path)
    assert not (tmp_path / "last.pt").exists()


def _spectrum_features(windows: np.ndarray, on_progress, should_stop, shaft_hz=None) -> np.ndarray:
    return np.abs(np.fft.rfft(windows, axis=1))[:, :72:2]  # 36 bins, the class tones among them


@pytest.mark.parametrize("key", ["rf", "svm", "gbm"])
def test_classical_model_trains_on_features_and_reports_deep_shaped_metrics(
    key: str, data: TrainingData, tmp_path
) -> None:
    args = {"rf": {"n_estimators": 20}, "svm": {}, "gbm": {"max_iter": 20}}[key]
    result = train_classical(key, args, data, _spectrum_features, tmp_path)
    assert result.test["window_accuracy"] > 0.6 and result.best_val_accuracy > 0.6
    assert set(result.test) == {
        "window_accuracy",
        "record_accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "per_class_accuracy",
        "class_keys",
        "confusion_matrix",
        "record_confusion_matrix",
        "n_windows",
        "n_records",
    }
    assert result.model_sha256 and result.model_path.endswith("model.skops")
    json.dumps(result.to_dict(), allow_nan=False)


def test_dataset_file_trains_deep_and_classical_models(tmp_path) -> None:
    """Given a generated dataset file, when both kinds train on it, then both are scored."""
    from pipeline.datasets import generate_dataset
    from pipeline.signals import GeneratorConfig

    config = GeneratorConfig(fault_types=("sain", "jeu", "oilwhirl"), records_per_class=4, seed=5)
    path = generate_dataset(config, tmp_path, "ds-train", workers=1).hdf5_path
    data = load_training_data(path)
    assert data.train.windows.shape[1] == 20_480 and len(data.class_keys) == 11

    deep = train_deep(
        "cnn1d", {"width": 8, "depth": 2}, {**FAST, "epochs": 1}, data, tmp_path / "deep"
    )
    # Tables cover the 3 classes present (plus any other the barely trained model predicts), not 11.
    keys = deep.test["class_keys"]
    assert {"sain", "jeu", "oilwhirl"} <= set(keys) and len(deep.test["confusion_matrix"]) == len(keys) < 11
    assert set(deep.test["per_class_accuracy"]) == set(keys) and deep.test["n_records"] * 5 == len(data.test)
    classical = train_classical("rf", {"n_estimators": 20}, data, None, tmp_path / "rf")
    assert classical.test["window_accuracy"] > 0.5


def test_mixed_precision_is_chosen_per_device_and_recorded(data: TrainingData, tmp_path) -> None:
    # bf16 autocast runs on CPU too, so the mixed-precision path trains and is recorded here.
    bf16 = train_deep("cnn1d", _args("cnn1d"), {**FAST, "precision": "bf16"}, data, tmp_path / "bf16")
    assert (bf16.precision, bf16.mixed_precision) == ("bf16", True)
    assert bf16.test["window_accuracy"] > 1 / CLASSES
    plain = train_deep("cnn1d", _args("cnn1d"), FAST, data, tmp_path / "auto")
    assert (plain.precision, plain.mixed_precision) == ("fp32", False)  # auto on CPU: full precision
    assert plain.to_dict()["precision"] == "fp32"
    with pytest.raises(InvalidInput, match="CUDA only"):
        train_deep("cnn1d", _args("cnn1d"), {**FAST, "precision": "fp16"}, data, tmp_path / "fp16")


def test_weight_average_is_what_is_validated_kept_and_tested(data: TrainingData, tmp_path) -> None:
    result = train_deep("cnn1d", _args("cnn1d"), {**FAST, "epochs": 1, "ema_decay": 0.9}, data, tmp_path)
    last = safe_load(tmp_path / "last.pt")
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    best = safe_load(result.model_path)["state_dict"]
    assert all(torch.equal(best[k], averaged[k]) for k in best)
    assert not all(torch.equal(best[k], last["model"][k]) for k in best)  # not the last step's weights
    model, _ = load_checkpoint(result.model_path)
    val_acc = (predict_proba(model, data.val.windows).argmax(1) == data.val.labels).mean()
    assert val_acc == pytest.approx(result.best_val_accuracy) and result.test["window_accuracy"] > 1 / CLASSES


def test_label_smoothing_trains_against_softened_targets(data: TrainingData, tmp_path) -> None:
    """Same seed, same batches: the smoothed loss adds the cross-entropy of the other classes,
    which grows as the model learns, so it stays above the plain loss; the model still learns."""
    plain = train_deep("cnn1d", _args("cnn1d"), FAST, data, tmp_path / "plain")
    smoothed = train_deep("cnn1d", _args("cnn1d"), {**FAST, "label_smoothing": 0.5}, data, tmp_path / "smoothed")
    assert all(s["train_loss"] > p["train_loss"] for s, p in zip(smoothed.history, plain.history, strict=True))
    assert smoothed.test["window_accuracy"] > 1 / CLASSES
    assert safe_load(tmp_path / "smoothed" / "last.pt")["config"]["label_smoothing"] == 0.5


def _killed_after_epoch_1_then_resumed(config: dict, data: TrainingData, tmp_path) -> tuple:
    """A cnn1d run stopped after epoch 1 and resumed, and the same run never stopped."""
    seen: list[EpochRecord] = []
    with pytest.raises(StopRequested):
        train_deep("cnn1d", _args("cnn1d"), config, data, tmp_path / "run",
                   should_stop=lambda: bool(seen), on_epoch=seen.append)
    resumed = train_deep("cnn1d", _args("cnn1d"), config, data, tmp_path / "run")
    return resumed, train_deep("cnn1d", _args("cnn1d"), config, data, tmp_path / "straight")


def test_augmented_training_learns_and_a_resume_sees_the_same_augmented_batches(
    data: TrainingData, tmp_path
) -> None:
    """Augmentation changes what training sees (not validation), still learns, and is drawn
    from (seed, epoch), so a run killed after epoch 1 continues exactly as one never killed."""
    config = {**FAST, "epochs": 3, "augment_shift": 0.1, "augment_scale": 0.2, "augment_noise": 0.2}
    resumed, straight = _killed_after_epoch_1_then_resumed(config, data, tmp_path)
    plain = train_deep("cnn1d", _args("cnn1d"), {**FAST, "epochs": 3}, data, tmp_path / "plain")
    assert resumed.resumed_from_epoch == 1
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert straight.history[0]["train_loss"] != plain.history[0]["train_loss"]
    assert straight.test["window_accuracy"] > 1 / CLASSES


def test_resume_restores_the_weight_average(data: TrainingData, tmp_path) -> None:
    """Validation scores the average, so a resume that lost it would score epochs 2-3 differently."""
    resumed, straight = _killed_after_epoch_1_then_resumed({**FAST, "epochs": 3, "ema_decay": 0.9}, data, tmp_path)
    assert resumed.resumed_from_epoch == 1
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]


def test_a_run_saved_before_an_option_existed_resumes_with_its_default(data: TrainingData, tmp_path) -> None:
    config = {**FAST, "epochs": 2}
    seen: list[EpochRecord] = []
    with pytest.raises(StopRequested):
        train_deep("cnn1d", _args("cnn1d"), config, data, tmp_path, should_stop=lambda: bool(seen),
                   on_epoch=seen.append)
    older = safe_load(tmp_path / "last.pt")
    del older["config"]["ema_decay"], older["ema"]
    torch.save(older, tmp_path / "last.pt")
    assert train_deep("cnn1d", _args("cnn1d"), config, data, tmp_path).resumed_from_epoch == 1


def test_the_weight_average_is_the_mean_of_the_steps_until_its_horizon_then_exponential() -> None:
    from pipeline.training.optim import make_ema

    model = torch.nn.Linear(2, 1)
    average = make_ema(model, TrainingConfig(ema_decay=0.9))
    for step in range(1, 13):  # the "weights" after step n are all n
        with torch.no_grad():
            model.weight.fill_(float(step))
        average.update_parameters(model)
        if step == 10:  # 1 / (1 - 0.9) steps: the mean of 1..10, nothing of the initial weights
            assert average.module.weight.detach()[0, 0].item() == pytest.approx(5.5)
    assert average.module.weight.detach()[0, 0].item() == pytest.approx((5.5 * 0.9 + 11 * 0.1) * 0.9 + 12 * 0.1)
