"""Recordings in the layout of a widely used public bearing test rig, built here (nothing downloaded).

MATLAB v5 files, one per recording, in folders named by fault and size (``Normal/``,
``IR007/``, ``OR007/``, ``B007/``), each with drive-end and fan-end accelerometers
(``X097_DE_time``, ``X097_FE_time``: float64 column vectors) and the shaft speed (``X097RPM``),
sampled at 12 kHz. Faults follow rolling-element bearing kinematics (DOMAIN.md "Real
recordings", a 6205-2RS bearing): a race or ball defect strikes at its characteristic rate,
each impact ringing a structural resonance, so it shows in the envelope spectrum.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import scipy.io

BEARING_6205 = {"n": 9, "d_mm": 7.94, "D_mm": 39.04, "phi_deg": 0.0}
KINDS = ("normal", "inner_race", "outer_race", "ball")
FOLDERS = {"normal": "Normal", "inner_race": "IR007", "outer_race": "OR007", "ball": "B007"}
RPMS = (1797.0, 1772.0, 1750.0, 1730.0)
RESONANCE_HZ = 3_000.0


def fault_frequencies(rpm: float) -> dict[str, float]:
    """Cage, outer race, inner race and ball spin frequencies (Hz) of the 6205 at ``rpm``."""
    fr = rpm / 60.0
    n, ratio = BEARING_6205["n"], BEARING_6205["d_mm"] / BEARING_6205["D_mm"]
    c = ratio * math.cos(math.radians(BEARING_6205["phi_deg"]))
    return {"ftf": fr / 2 * (1 - c), "bpfo": n * fr / 2 * (1 - c), "bpfi": n * fr / 2 * (1 + c),
            "bsf": fr / (2 * ratio) * (1 - c * c)}


def impact_rate(kind: str, rpm: float) -> float:
    """How often the defect of ``kind`` strikes (Hz): BPFI, BPFO, or 2·BSF (a ball hits both races)."""
    f = fault_frequencies(rpm)
    return {"inner_race": f["bpfi"], "outer_race": f["bpfo"], "ball": 2 * f["bsf"]}[kind]


def rig_signal(kind: str, rpm: float, fs: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Drive-end and fan-end samples ``[n, 2]`` of one recording of ``kind`` at ``rpm``."""
    n = int(round(fs * seconds))
    t = np.arange(n) / fs
    fr = rpm / 60.0
    shaft = 0.05 * np.sin(2 * np.pi * fr * t + rng.uniform(0, 2 * np.pi)) \
        + 0.02 * np.sin(4 * np.pi * fr * t + rng.uniform(0, 2 * np.pi))
    impacts = np.zeros(n)
    if kind != "normal":
        rate = impact_rate(kind, rpm)
        times = np.cumsum(np.full(int(seconds * rate) + 2, 1.0 / rate)
                          * (1 + 0.01 * rng.standard_normal(int(seconds * rate) + 2)))
        hits = (times[times < seconds] * fs).astype(np.int64)
        strength = np.ones(hits.size)
        if kind == "inner_race":  # the inner race turns: the load zone modulates at 1X
            strength = 0.6 + 0.4 * np.cos(2 * np.pi * fr * hits / fs)
        elif kind == "ball":  # the ball turns with the cage: modulated at FTF
            strength = 0.6 + 0.4 * np.cos(2 * np.pi * fault_frequencies(rpm)["ftf"] * hits / fs)
        impacts[hits] = strength
        ring = np.arange(int(0.004 * fs)) / fs  # ~3 ms of decaying resonance per impact
        kernel = np.exp(-ring / 0.0008) * np.sin(2 * np.pi * RESONANCE_HZ * ring)
        impacts = np.convolve(impacts, kernel)[:n]
    gain = {"normal": 0.0, "inner_race": 0.5, "outer_race": 0.7, "ball": 0.4}[kind]
    # Each recording has its own sensor gain and noise floor (mounting, cable, amplifier), so a
    # recording's overall level says little of its class: its RMS ranges overlap across classes.
    level, noise = rng.uniform(0.6, 1.6), rng.uniform(0.04, 0.07)
    drive = level * (shaft + gain * impacts) + noise * rng.standard_normal(n)
    fan = level * (0.5 * shaft + 0.3 * gain * impacts) + noise * rng.standard_normal(n)
    return np.column_stack([drive, fan])


def write_rig_mat_files(root: Path, *, recordings_per_class: int = 4, fs: int = 12_000,
                        seconds: float = 10.0, seed: int = 0) -> list[dict]:
    """Write the folder tree of MAT files; return ``{"path", "kind", "rpm", "number"}`` per file."""
    rng = np.random.default_rng(seed)
    written = []
    number = 97
    for kind in KINDS:
        folder = Path(root) / FOLDERS[kind]
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(recordings_per_class):
            rpm = RPMS[k % len(RPMS)]
            samples = rig_signal(kind, rpm, fs, seconds, rng)
            name = f"X{number:03d}"
            path = folder / f"{FOLDERS[kind]}_{k}.mat"
            scipy.io.savemat(path, {f"{name}_DE_time": samples[:, :1], f"{name}_FE_time": samples[:, 1:],
                                    f"{name}RPM": np.array([[rpm]])})
            written.append({"path": path.relative_to(root).as_posix(), "kind": kind, "rpm": rpm,
                            "number": number})
            number += 1
    return written


def write_rig_tables(root: Path, *, fmt: str, recordings_per_class: int = 4, fs: int = 12_000,
                     seconds: float = 10.0, seed: int = 0) -> Path:
    """Write one table per recording (columns ``DE``, ``FE``; ``.npy``: ``[n, 2]``) and a
    ``manifest.csv`` (``path``, ``label``, ``rpm``, ``fs``, ``group``); return the manifest's path."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for kind in KINDS:
        folder = Path(root) / kind
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(recordings_per_class):
            rpm = RPMS[k % len(RPMS)]
            samples = rig_signal(kind, rpm, fs, seconds, rng)
            path = folder / f"rec{k}.{fmt}"
            if fmt == "npy":
                np.save(path, samples)
            else:
                frame = pd.DataFrame({"DE": samples[:, 0], "FE": samples[:, 1]})
                frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path)
            rows.append({"path": path.relative_to(root).as_posix(), "label": kind, "rpm": rpm, "fs": fs,
                         "group": f"{kind}-{k}"})
    manifest = Path(root) / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest
