"""How high window accuracy can go on a generated dataset, and where a model's errors are.

A ``cavitation`` record's only trace of its class is 2-7 bursts of 8 ms (1,500-2,500 Hz
carrier) at random positions over its 5 s (DOMAIN.md), so some of its 1 s windows hold no
burst: such a window is drawn from the same distribution as a healthy one, and the best
call for it is ``sain`` (healthy windows outnumber them). Every burstless cavitation test
window is therefore an error for any model, and ``1 - burstless / windows`` bounds window
accuracy from above. A window holds a burst when its 1,400-2,600 Hz band peaks above 1.5x
the highest peak of any healthy test window.

``python -m bench.bench_accuracy_ceiling [--dataset bench.h5] [--predictions test_predictions.npz]``
generates the training benchmark's dataset (320 records a class, seed 2024) unless given
one; with a trained model's test predictions it also splits the model's errors into the
burstless windows and the rest, and names the records it gets wrong.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from scipy.signal import butter, sosfiltfilt

from bench.common import write_result
from pipeline.datasets.generate import generate_dataset
from pipeline.signals import GeneratorConfig
from pipeline.training import load_training_data

__all__ = ["run"]

BAND_HZ = (1400.0, 2600.0)  # around the bursts' 1,500-2,500 Hz carrier
MARGIN = 1.5  # a burst peaks this many times above the loudest healthy window in the band


def _band_peaks(windows: np.ndarray, rate: float) -> np.ndarray:
    """Each window's peak magnitude in ``BAND_HZ``."""
    sos = butter(6, BAND_HZ, btype="band", fs=rate, output="sos")
    return np.abs(sosfiltfilt(sos, windows.reshape(len(windows), -1), axis=-1)).max(axis=-1)


def burstless_windows(windows: np.ndarray, labels: np.ndarray, class_keys: list[str], rate: float) -> np.ndarray:
    """A mask of the ``cavitation`` windows that hold no burst (so look healthy)."""
    cavitation, healthy = class_keys.index("cavitation"), class_keys.index("sain")
    peaks = np.zeros(len(labels))
    keep = (labels == cavitation) | (labels == healthy)
    peaks[keep] = _band_peaks(windows[keep], rate)
    threshold = MARGIN * peaks[labels == healthy].max()
    return (labels == cavitation) & (peaks < threshold)


def _errors(predictions: Path, burstless: np.ndarray, class_keys: list[str], severities: np.ndarray) -> dict[str, Any]:
    """Split a model's wrong test windows into burstless cavitation windows and the rest."""
    saved = np.load(predictions)
    probabilities, labels, record_ids = saved["probabilities"], saved["labels"], saved["record_ids"]
    wrong = probabilities.argmax(axis=1) != labels
    confusions: dict[str, int] = {}
    for true, predicted in zip(labels[wrong], probabilities[wrong].argmax(axis=1)):
        name = f"{class_keys[true]} -> {class_keys[predicted]}"
        confusions[name] = confusions.get(name, 0) + 1
    ids = np.unique(record_ids)
    votes = np.stack([probabilities[record_ids == r].mean(axis=0) for r in ids]).argmax(axis=1)
    truth = np.array([labels[record_ids == r][0] for r in ids])
    return {
        "window_accuracy": round(float(1 - wrong.mean()), 4), "wrong_windows": int(wrong.sum()),
        "wrong_burstless_cavitation": int((wrong & burstless).sum()),
        "right_burstless_cavitation": int((~wrong & burstless).sum()),
        "wrong_other": int((wrong & ~burstless).sum()),
        "confusions": dict(sorted(confusions.items(), key=lambda item: -item[1])),
        "wrong_records": [{"record": int(r), "class": class_keys[t], "severity": round(float(severities[r]), 2),
                           "predicted": class_keys[v]} for r, t, v in zip(ids, truth, votes) if t != v],
    }


def run(records_per_class: int = 320, seed: int = 2024, dataset: Path | None = None,
        predictions: Path | None = None) -> dict[str, Any]:
    """Count the test split's burstless cavitation windows, bound window accuracy by them,
    and (with ``predictions``) attribute a model's errors; writes ``accuracy_ceiling.json``."""
    with tempfile.TemporaryDirectory(prefix="pfd-bench-ceiling-") as tmp:
        if dataset is None:
            config = GeneratorConfig(records_per_class=records_per_class, seed=seed)
            dataset = Path(generate_dataset(config, tmp, "bench").hdf5_path)
        data = load_training_data(dataset)
        test = data.test
        burstless = burstless_windows(test.windows, test.labels, list(data.class_keys), data.geometry.sampling_rate)
        with h5py.File(dataset, "r") as handle:
            severities = handle["test"]["severities"][:]
            dataset_seed = int(handle.attrs["seed"])
    cavitation = int((test.labels == list(data.class_keys).index("cavitation")).sum())
    figures: dict[str, Any] = {
        "dataset": {"test_windows": len(test.labels), "test_records": len(np.unique(test.record_ids)),
                    "seed": dataset_seed},
        "cavitation_windows": cavitation, "burstless_cavitation_windows": int(burstless.sum()),
        "window_accuracy_ceiling": round(float(1 - burstless.mean()), 4),
        "band_hz": list(BAND_HZ), "margin_over_loudest_healthy": MARGIN,
    }
    if predictions is not None:
        figures["model"] = {"predictions": predictions.name,
                            **_errors(predictions, burstless, list(data.class_keys), severities)}
    write_result("accuracy_ceiling", figures)
    return figures


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records-per-class", type=int, default=320)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--dataset", type=Path, help="an existing dataset file instead of generating one")
    parser.add_argument("--predictions", type=Path, help="a trained model's test_predictions.npz on that dataset")
    args = parser.parse_args()
    print(json.dumps(run(args.records_per_class, args.seed, args.dataset, args.predictions), indent=2))


if __name__ == "__main__":
    main()
