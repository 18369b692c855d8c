"""Feature extraction: known signals give known values; batching never changes a value."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from matplotlib.image import imread

from pipeline.domain import FS, WINDOW_LENGTH
from pipeline.errors import DatasetFileError, InvalidInput, StopRequested
from pipeline.features import (
    DOMAINS,
    FEATURE_NAMES,
    bispectrum,
    envelope,
    extract_features,
    extract_features_loop,
    feature_names,
    frequency,
    load_feature_set,
    save_feature_set,
    time_domain,
)
from pipeline.features._numeric import moments
from pipeline.features.extract import FeatureMatrix
from pipeline.features.importance import correlation
from pipeline.features.plots import plot_correlation, plot_importance

T = np.arange(WINDOW_LENGTH) / FS
DF = FS / WINDOW_LENGTH  # FFT resolution of a 1 s window: 1 Hz

EXPECTED_NAMES = (
    # Time (7)
    "rms", "kurtosis", "skewness", "crest_factor", "shape_factor", "impulse_factor",
    "clearance_factor",
    # Frequency (12)
    "dominant_frequency", "spectral_centroid", "spectral_entropy", "band_energy_0_500",
    "band_energy_500_2000", "band_energy_2000_5000", "band_energy_5000_10000",
    "total_spectral_power", "spectral_std", "harmonic_ratio_2x", "harmonic_ratio_3x",
    "spectral_peakiness",
    # Envelope (4)
    "envelope_rms", "envelope_kurtosis", "envelope_peak", "modulation_frequency",
    # Wavelet and cepstral (7)
    "wavelet_energy_ratio", "wavelet_kurtosis", "wavelet_energy_d1", "wavelet_energy_d3",
    "wavelet_energy_d5", "cepstral_peak_ratio", "quefrency_centroid",
    # Bispectrum (6)
    "bispectrum_peak", "bispectrum_mean", "bispectrum_entropy", "phase_coupling",
    "nonlinearity_index", "bispectrum_peak_ratio",
)  # fmt: skip


def column(values: np.ndarray, name: str) -> np.ndarray:
    return values[:, FEATURE_NAMES.index(name)]


def mixed_windows(n: int, seed: int = 0) -> np.ndarray:
    """Noise plus a shaft tone and a burst: a little of everything the features look at."""
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.standard_normal((n, WINDOW_LENGTH))
    x += np.sin(2 * np.pi * 61 * T + rng.uniform(0, 6, (n, 1)))
    x[:, 5000:5163] += 2.0 * np.sin(2 * np.pi * 2000 * T[:163])
    return x.astype(np.float32)


def test_feature_names_are_the_36_of_domain_md_in_order() -> None:
    assert FEATURE_NAMES == EXPECTED_NAMES
    assert len(set(FEATURE_NAMES)) == 36


def test_extract_features_returns_one_row_of_36_per_window() -> None:
    result = extract_features(mixed_windows(3))
    assert result.values.shape == (3, 36)
    assert result.values.dtype == np.float64
    assert result.names == EXPECTED_NAMES


def test_rms_of_a_sine_is_amplitude_over_root_two() -> None:
    amplitude = 2.5
    x = amplitude * np.sin(2 * np.pi * 60 * T)[None, :]
    rms = time_domain.compute(x, FS)[0, 0]
    assert rms == pytest.approx(amplitude / np.sqrt(2), rel=1e-9)


def test_dominant_frequency_of_a_157_hz_tone_is_157_hz() -> None:
    x = np.sin(2 * np.pi * 157 * T + 0.3)[None, :]
    dominant = frequency.compute(x, FS)[0, frequency.NAMES.index("dominant_frequency")]
    assert abs(dominant - 157) <= DF


def test_band_energies_and_total_power_follow_parseval() -> None:
    # Given a 300 Hz tone of amplitude 1 and a 3 kHz tone of amplitude 2
    x = (np.sin(2 * np.pi * 300 * T) + 2 * np.sin(2 * np.pi * 3000 * T))[None, :]
    values = dict(zip(frequency.NAMES, frequency.compute(x, FS)[0]))
    # Then power is the variance (0.5 + 2) and splits 1 : 4 between the two bands
    assert values["total_spectral_power"] == pytest.approx(2.5, rel=1e-9)
    assert values["band_energy_0_500"] == pytest.approx(0.2, abs=1e-9)
    assert values["band_energy_2000_5000"] == pytest.approx(0.8, abs=1e-9)


def test_excess_kurtosis_of_gaussian_noise_is_near_zero() -> None:
    x = np.random.default_rng(1).standard_normal((4, WINDOW_LENGTH))
    kurtosis = time_domain.compute(x, FS)[:, 1]
    # Standard error of the kurtosis estimate is sqrt(24 / n) ≈ 0.034.
    assert np.all(np.abs(kurtosis) < 0.15)


def test_moments_match_scipy_definitions() -> None:
    x = np.random.default_rng(2).gamma(2.0, size=(3, 4096))
    skew, kurt = moments(x)
    np.testing.assert_allclose(skew, scipy.stats.skew(x, axis=1), rtol=1e-10)
    np.testing.assert_allclose(kurt, scipy.stats.kurtosis(x, axis=1), rtol=1e-10)


def test_envelope_modulation_frequency_of_an_am_signal_is_the_modulation() -> None:
    # Given a 3 kHz carrier amplitude-modulated at 37 Hz
    x = ((1 + 0.5 * np.sin(2 * np.pi * 37 * T)) * np.sin(2 * np.pi * 3000 * T))[None, :]
    modulation = envelope.compute(x, FS)[0, envelope.NAMES.index("modulation_frequency")]
    assert abs(modulation - 37) <= DF


def test_harmonic_ratios_of_known_harmonics() -> None:
    # Given 1X at 60 Hz with 2X at half and 3X at a quarter of its amplitude
    x = (
        np.sin(2 * np.pi * 60 * T)
        + 0.5 * np.sin(2 * np.pi * 120 * T + 1.0)
        + 0.25 * np.sin(2 * np.pi * 180 * T + 2.0)
    )[None, :]
    values = dict(zip(frequency.NAMES, frequency.compute(x, FS)[0]))
    assert values["harmonic_ratio_2x"] == pytest.approx(0.5, rel=1e-6)
    assert values["harmonic_ratio_3x"] == pytest.approx(0.25, rel=1e-6)


def test_harmonic_ratios_fall_back_to_60_hz_when_the_peak_is_drift() -> None:
    # Given a strong 3 Hz drift dominating a 60 Hz shaft tone with a 2X of 0.4
    x = (
        5 * np.sin(2 * np.pi * 3 * T)
        + np.sin(2 * np.pi * 60 * T)
        + 0.4 * np.sin(2 * np.pi * 120 * T)
    )[None, :]
    values = dict(zip(frequency.NAMES, frequency.compute(x, FS)[0]))
    assert values["dominant_frequency"] == pytest.approx(3, abs=DF)
    assert values["harmonic_ratio_2x"] == pytest.approx(0.4, rel=1e-6)


def test_harmonic_ratios_take_the_1x_line_from_the_recorded_shaft_speed() -> None:
    # Given a 1797 rpm shaft (29.95 Hz) with 2X at half and 3X at a quarter of 1X, under a
    # structural resonance at 3 kHz three times stronger, in two windows
    shaft = 1797 / 60
    x = (
        np.sin(2 * np.pi * shaft * T)
        + 0.5 * np.sin(2 * np.pi * 2 * shaft * T + 1.0)
        + 0.25 * np.sin(2 * np.pi * 3 * shaft * T + 2.0)
        + 3.0 * np.sin(2 * np.pi * 3000 * T)
    )[None, :].repeat(2, axis=0)
    ratios = [FEATURE_NAMES.index("harmonic_ratio_2x"), FEATURE_NAMES.index("harmonic_ratio_3x")]
    # Then without the speed the dominant resonance stands for 1X and the ratios say nothing;
    blind = extract_features(x).values
    assert column(blind, "dominant_frequency") == pytest.approx(3000, abs=DF)
    assert (blind[:, ratios] < 0.05).all()
    # with it (one value for all, or one per window, NaN: not recorded) they are the harmonics'
    # (within the ±1 bin peak search's scalloping: the orders fall between 1 Hz bins)
    for speeds in (shaft, np.array([shaft, shaft])):
        known = extract_features(x, shaft_hz=speeds).values
        np.testing.assert_allclose(known[:, ratios], [[0.5, 0.25]] * 2, rtol=0.05)
        other = [i for i in range(len(FEATURE_NAMES)) if i not in ratios]
        np.testing.assert_array_equal(known[:, other], blind[:, other])
    mixed = extract_features(x, shaft_hz=np.array([shaft, np.nan])).values
    np.testing.assert_array_equal(mixed[1], blind[1])
    np.testing.assert_allclose(mixed[0, ratios], [0.5, 0.25], rtol=0.05)
    # and the one-window loop places the line alike
    np.testing.assert_allclose(extract_features_loop(x, shaft_hz=shaft).values, known, rtol=1e-9)


@pytest.mark.parametrize("speeds", [0.0, -30.0, np.inf, np.array([30.0])])
def test_a_shaft_speed_must_be_positive_and_one_per_window(speeds) -> None:
    with pytest.raises(InvalidInput, match="shaft speed"):
        extract_features(mixed_windows(2), shaft_hz=speeds)


def _triads(coupled: bool, seed: int) -> np.ndarray:
    """Segments holding bins 20, 13 and 33 with random phases; coupled: φ3 = φ1 + φ2."""
    rng = np.random.default_rng(seed)
    n_seg = WINDOW_LENGTH // bispectrum.NFFT
    t = np.arange(bispectrum.NFFT) / bispectrum.NFFT
    phases = rng.uniform(0, 2 * np.pi, (n_seg, 3))
    if coupled:
        phases[:, 2] = phases[:, 0] + phases[:, 1]
    segs = sum(np.cos(2 * np.pi * b * t + phases[:, [i]]) for i, b in enumerate((20, 13, 33)))
    return (segs + 0.05 * rng.standard_normal(segs.shape)).reshape(1, -1)


def test_bispectrum_phase_coupling_detects_a_coupled_triad() -> None:
    coupled = dict(zip(bispectrum.NAMES, bispectrum.compute(_triads(True, 3), FS)[0]))
    uncoupled = dict(zip(bispectrum.NAMES, bispectrum.compute(_triads(False, 3), FS)[0]))
    assert coupled["phase_coupling"] > 0.9
    assert uncoupled["phase_coupling"] < 0.5


def test_bispectrum_nonlinearity_index_of_gaussian_noise_is_about_one() -> None:
    x = np.random.default_rng(4).standard_normal((2, WINDOW_LENGTH))
    index = bispectrum.compute(x, FS)[:, bispectrum.NAMES.index("nonlinearity_index")]
    assert np.all((index > 0.7) & (index < 1.5))


def test_vectorised_extraction_equals_the_one_window_loop() -> None:
    windows = mixed_windows(5, seed=7)
    vectorised = extract_features(windows, chunk_size=3).values
    looped = extract_features_loop(windows).values
    np.testing.assert_allclose(vectorised, looped, rtol=1e-7, atol=1e-12)


def test_constant_and_zero_windows_give_finite_values() -> None:
    windows = np.vstack([np.zeros(WINDOW_LENGTH), np.full(WINDOW_LENGTH, 3.0)])
    values = extract_features(windows).values
    assert np.isfinite(values).all()
    # A constant window has no shape: kurtosis and skewness are a Gaussian's 0.
    assert column(values, "kurtosis")[1] == 0.0
    assert column(values, "wavelet_kurtosis")[1] == 0.0
    assert column(values, "rms")[1] == pytest.approx(3.0)
    assert np.all(values[0] == 0.0)


def test_extract_features_rejects_an_unknown_domain_naming_the_valid_ones() -> None:
    with pytest.raises(InvalidInput, match="bispectrum"):
        extract_features(mixed_windows(1), domains=("time", "fourier"))


def test_extract_features_keeps_canonical_column_order_for_a_subset() -> None:
    result = extract_features(mixed_windows(2), domains=("envelope", "time"))
    assert result.names == feature_names(("time", "envelope"))
    assert result.values.shape == (2, 11)
    full = extract_features(mixed_windows(2)).values
    np.testing.assert_array_equal(result.values[:, :7], full[:, :7])


@pytest.mark.parametrize(
    "windows",
    [np.zeros(WINDOW_LENGTH), np.zeros((2, 100)), np.full((1, WINDOW_LENGTH), np.nan)],
    ids=["one-dimensional", "too-short", "nan"],
)
def test_extract_features_rejects_bad_windows(windows: np.ndarray) -> None:
    with pytest.raises(InvalidInput):
        extract_features(windows)


def test_extract_features_reports_progress_and_honours_stop() -> None:
    seen: list[float] = []
    extract_features(
        mixed_windows(4),
        domains=("time",),
        chunk_size=2,
        on_progress=lambda fraction, status="", **m: seen.append(fraction),
    )
    assert seen == [0.5, 1.0]
    with pytest.raises(StopRequested):
        extract_features(mixed_windows(2), domains=("time",), should_stop=lambda: True)


def test_feature_set_round_trips_through_npz(tmp_path) -> None:
    matrix = FeatureMatrix(values=np.arange(12.0).reshape(3, 4), names=("a", "b", "c", "d"))
    path = tmp_path / "sets" / "fs-1.npz"
    save_feature_set(
        path,
        matrix,
        labels=[0, 1, 2],
        splits=["train", "val", "train"],
        record_ids=[10, 11, 12],
        provenance={"dataset_id": "ds-1", "domains": list(DOMAINS)},
    )
    loaded = load_feature_set(path)
    np.testing.assert_array_equal(loaded.values, matrix.values)
    assert loaded.names == matrix.names
    assert loaded.labels.tolist() == [0, 1, 2]
    assert loaded.record_ids.tolist() == [10, 11, 12]
    assert loaded.provenance == {"dataset_id": "ds-1", "domains": list(DOMAINS)}
    X_train, y_train = loaded.split("train")
    assert X_train.shape == (2, 4) and y_train.tolist() == [0, 2]
    assert [p.name for p in path.parent.iterdir()] == ["fs-1.npz"]  # no temporary left


def test_load_feature_set_rejects_other_files(tmp_path) -> None:
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(DatasetFileError):
        load_feature_set(other)
    with pytest.raises(DatasetFileError):
        load_feature_set(tmp_path / "missing.npz")


def test_save_feature_set_rejects_mismatched_lengths(tmp_path) -> None:
    matrix = FeatureMatrix(values=np.zeros((2, 1)), names=("a",))
    with pytest.raises(InvalidInput):
        save_feature_set(tmp_path / "x.npz", matrix, [0], ["train", "val"], [0, 1], {})


def test_plots_write_readable_pngs(tmp_path) -> None:
    importance = {
        "mutual_info": [("a", 0.5), ("b", 0.1)],
        "random_forest": [("b", 0.7), ("a", 0.3)],
    }
    x = np.random.default_rng(5).standard_normal((20, 3))
    matrix, _ = correlation(x, ["a", "b", "c"], threshold=0.5)
    bars = plot_importance(importance, tmp_path / "importance.png")
    heat = plot_correlation(matrix, ["a", "b", "c"], tmp_path / "correlation.png")
    for path in (bars, heat):
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 100
