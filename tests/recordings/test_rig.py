"""The rig fixtures are what they claim: the public rig's MAT layout, its bearing's kinematics
in the written files, and tables that read back as written.

``test_import_recordings`` checks the envelope physics of ``rig_signal`` itself and imports the
files; here the files on disk are checked, as a reader other than our importer sees them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.signal

from tests.recordings.rig import (
    FOLDERS,
    KINDS,
    RESONANCE_HZ,
    RPMS,
    fault_frequencies,
    impact_rate,
    rig_signal,
    write_rig_mat_files,
    write_rig_tables,
)

FS = 12_000


def _envelope_spectrum(signal: np.ndarray, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and magnitudes of the Hilbert envelope of ``signal`` band-passed around the resonance."""
    sos = scipy.signal.butter(4, [RESONANCE_HZ - 1000, RESONANCE_HZ + 1000], "bandpass", fs=fs, output="sos")
    envelope = np.abs(scipy.signal.hilbert(scipy.signal.sosfiltfilt(sos, signal)))
    return np.fft.rfftfreq(envelope.size, 1 / fs), np.abs(np.fft.rfft(envelope - envelope.mean()))


def _load(root, entry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drive end, fan end and RPM variables of one written file, by the names the real set uses."""
    data = scipy.io.loadmat(root / entry["path"])
    name = f"X{entry['number']:03d}"
    return data[f"{name}_DE_time"], data[f"{name}_FE_time"], data[f"{name}RPM"]


@pytest.fixture(scope="module")
def mat_files(tmp_path_factory):
    # Full 10 s files, as the real set has them: 4 per class cover the whole rpm cycle.
    root = tmp_path_factory.mktemp("rig")
    return root, write_rig_mat_files(root, recordings_per_class=4)


def test_fault_frequencies_are_the_6205_multiples_of_the_shaft_speed():
    fr = 1797 / 60
    f = fault_frequencies(1797)
    # DOMAIN.md's coefficients are given to 3 decimals.
    assert f["bpfi"] / fr == pytest.approx(5.415, abs=1e-3)
    assert f["bpfo"] / fr == pytest.approx(3.585, abs=1e-3)
    assert f["bsf"] / fr == pytest.approx(2.357, abs=1e-3)
    assert f["ftf"] / fr == pytest.approx(0.398, abs=1e-3)
    assert impact_rate("ball", 1797) == pytest.approx(2 * f["bsf"])


def test_mat_files_have_the_public_rigs_names_folders_shapes_and_speeds(mat_files):
    root, files = mat_files
    assert len(files) == 4 * len(KINDS)
    assert len({e["number"] for e in files}) == len(files) and min(e["number"] for e in files) == 97
    for k, entry in enumerate(files):
        folder = FOLDERS[entry["kind"]]
        assert entry["path"] == f"{folder}/{folder}_{k % 4}.mat"
        assert entry["rpm"] == RPMS[k % 4]
        # MATLAB v5 (what loadmat reads without h5py), as the real files are.
        assert scipy.io.matlab.matfile_version(str(root / entry["path"]))[0] == 1
        drive, fan, rpm = _load(root, entry)
        assert drive.shape == fan.shape == (120_000, 1)
        assert drive.dtype == fan.dtype == np.float64
        assert rpm.size == 1 and float(rpm.squeeze()) == entry["rpm"]


def test_each_file_strikes_at_its_kinds_rate_for_its_own_rpm_and_normal_files_do_not(mat_files):
    root, files = mat_files
    for entry in files:
        drive, _, rpm = _load(root, entry)
        freqs, spectrum = _envelope_spectrum(drive[:, 0], FS)
        if entry["kind"] == "normal":
            band = (freqs >= 50) & (freqs <= 250)  # every fault rate of the 6205 at 1730-1797 rpm
            assert spectrum[band].max() / np.median(spectrum[band]) < 10, entry
            continue
        rate = impact_rate(entry["kind"], float(rpm.squeeze()))
        # Up to 1.5x the rate: the other kinds' rates lie in there, the rate's own 2nd harmonic
        # (nearly as tall for sharp impacts, as in real outer-race spectra) does not.
        band = (freqs >= 50) & (freqs <= 1.5 * rate)
        peak = freqs[band][np.argmax(spectrum[band])]
        assert abs(peak - rate) <= max(1.0, 2 * freqs[1]), entry
        assert spectrum[band].max() / np.median(spectrum[band]) > 10, entry


def test_the_fan_end_carries_the_same_fault_weaker(mat_files):
    root, files = mat_files
    for entry in files:
        if entry["kind"] == "normal":
            continue
        drive, fan, rpm = _load(root, entry)
        rate = impact_rate(entry["kind"], float(rpm.squeeze()))
        heights = []
        for channel in (drive[:, 0], fan[:, 0]):
            freqs, spectrum = _envelope_spectrum(channel, FS)
            heights.append(spectrum[np.argmin(np.abs(freqs - rate))])
        assert 0 < heights[1] < 0.6 * heights[0], entry


def test_the_same_seed_writes_the_same_files_and_another_seed_other_ones(tmp_path):
    a = write_rig_mat_files(tmp_path / "a", recordings_per_class=1, seconds=1.0, seed=3)
    b = write_rig_mat_files(tmp_path / "b", recordings_per_class=1, seconds=1.0, seed=3)
    c = write_rig_mat_files(tmp_path / "c", recordings_per_class=1, seconds=1.0, seed=4)
    assert a == b == c  # the same paths, kinds, speeds and numbers
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(_load(tmp_path / "a", x)[0], _load(tmp_path / "b", y)[0])
        assert not np.array_equal(_load(tmp_path / "a", x)[0], _load(tmp_path / "c", z)[0])


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npy"])
def test_tables_read_back_as_written_and_the_manifest_lists_every_file(fmt, tmp_path):
    manifest = write_rig_tables(tmp_path, fmt=fmt, recordings_per_class=2, seconds=1.0, seed=5)
    assert manifest == tmp_path / "manifest.csv"
    rows = pd.read_csv(manifest)
    assert list(rows.columns) == ["path", "label", "rpm", "fs", "group"]
    assert sorted(rows["path"]) == sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob(f"*/*.{fmt}"))
    assert rows["group"].is_unique and set(rows["label"]) == set(KINDS) and set(rows["fs"]) == {FS}
    # The writer draws the recordings in manifest order from one generator: draw them again.
    rng = np.random.default_rng(5)
    for row in rows.itertuples():
        assert row.path.startswith(f"{row.label}/")
        expected = rig_signal(row.label, row.rpm, FS, 1.0, rng)
        path = tmp_path / row.path
        if fmt == "npy":
            got = np.load(path)
        else:
            frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
            assert list(frame.columns) == ["DE", "FE"]
            got = frame.to_numpy()
        assert got.shape == (FS, 2)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
