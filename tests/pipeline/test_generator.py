"""The generator: reproducibility, the physics of each class, and config validation."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from pipeline.domain import CLASS_KEYS, FS, RECORD_LENGTH, SEVERITY_BANDS
from pipeline.errors import InvalidInput
from pipeline.signals import (
    GeneratorConfig,
    NoiseConfig,
    generate_record,
    generate_records,
)

CLEAN = {"noise": NoiseConfig.none(), "transient_probability": 0.0, "severity_ramp_probability": 0.0}


def clean_record(fault: str, seed: int = 7, severity: str = "severe"):
    config = GeneratorConfig(fault_types=(fault,), records_per_class=1, severities=(severity,),
                             seed=seed, **CLEAN)
    return generate_record(config, 0)


def spectrum(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    magnitude = np.abs(np.fft.rfft(signal.astype(np.float64)))
    return np.fft.rfftfreq(signal.size, 1.0 / FS), magnitude


def peak_near(freqs: np.ndarray, magnitude: np.ndarray, target: float, tol: float = 0.5):
    band = (freqs > target - tol) & (freqs < target + tol)
    return magnitude[band].max()


def dominant_in(freqs, magnitude, low, high) -> float:
    band = (freqs >= low) & (freqs <= high)
    return float(freqs[band][np.argmax(magnitude[band])])


# ---- reproducibility ------------------------------------------------------------------


def test_generate_record_same_seed_gives_identical_records():
    config = GeneratorConfig(records_per_class=2, seed=3)
    first, again = generate_record(config, 5), generate_record(config, 5)
    assert np.array_equal(first.signal, again.signal)
    assert first.metadata == again.metadata


def test_generate_record_different_seed_gives_different_records():
    a = generate_record(GeneratorConfig(records_per_class=2, seed=3), 5)
    b = generate_record(GeneratorConfig(records_per_class=2, seed=4), 5)
    assert not np.array_equal(a.signal, b.signal)


def test_generate_record_is_seeded_by_seed_plus_index():
    # Record i of seed s equals record i-1 of seed s+1 when both fall in the same class.
    a = generate_record(GeneratorConfig(records_per_class=4, seed=10), 2)
    b = generate_record(GeneratorConfig(records_per_class=4, seed=11), 1)
    assert a.metadata["seed"] == b.metadata["seed"] == 12
    assert a.metadata["speed_hz"] == b.metadata["speed_hz"]


def test_generate_records_in_parallel_equals_sequential():
    config = GeneratorConfig(fault_types=("jeu", "cavitation"), records_per_class=9)
    indices = [0, 3, 17, 9, 10, 11, 12, 13, 14, 15, 16, 1]
    parallel = generate_records(config, indices, workers=2)
    assert [r.metadata["index"] for r in parallel] == indices
    for record in parallel[::5]:
        alone = generate_record(config, record.metadata["index"])
        assert np.array_equal(record.signal, alone.signal)


def test_generate_records_works_from_a_thread():
    config = GeneratorConfig(fault_types=("usure",), records_per_class=10)
    result: dict[str, list] = {}
    worker = threading.Thread(
        target=lambda: result.setdefault("records", generate_records(config, range(10), 2)))
    worker.start()
    worker.join(timeout=120)
    assert len(result["records"]) == 10


# ---- records ------------------------------------------------------------------------


def test_record_label_indexes_class_keys_not_fault_types():
    config = GeneratorConfig(fault_types=("oilwhirl", "sain"), records_per_class=1, **CLEAN)
    first, second = generate_record(config, 0), generate_record(config, 1)
    assert (first.fault, first.label) == ("oilwhirl", CLASS_KEYS.index("oilwhirl"))
    assert (second.fault, second.label) == ("sain", 0)


def test_record_signal_and_metadata_have_the_documented_shape():
    record = generate_record(GeneratorConfig(records_per_class=1, seed=5), 3)
    assert record.signal.dtype == np.float32 and record.signal.shape == (RECORD_LENGTH,)
    assert np.all(np.isfinite(record.signal))
    meta = json.loads(json.dumps(record.metadata))  # JSON-safe
    for key in ("fault", "severity", "severity_band", "speed_hz", "load_percent",
                "temperature_c", "sommerfeld", "transient", "noise", "seed"):
        assert key in meta
    assert 0.05 <= meta["sommerfeld"] <= 0.5
    assert meta["noise"] == NoiseConfig().to_dict()


def test_record_severity_lies_in_its_band_and_sain_is_one():
    config = GeneratorConfig(fault_types=("sain", "usure"), records_per_class=4,
                             severity_ramp_probability=0.0)
    assert generate_record(config, 0).severity == 1.0
    for index in range(4, 8):
        record = generate_record(config, index)
        low, high = SEVERITY_BANDS[record.metadata["severity_band"]]
        assert low <= record.severity <= high


def test_quantization_alone_gives_multiples_of_the_step():
    noise = NoiseConfig(**{**NoiseConfig.none().to_dict(), "quantization": True})
    config = GeneratorConfig(fault_types=("jeu",), records_per_class=1, noise=noise)
    steps = generate_record(config, 0).signal.astype(np.float64) / 0.001
    assert np.allclose(steps, np.round(steps), atol=1e-3)


def test_noise_layers_off_leaves_the_signature_unchanged():
    # Noise layers draw from their own streams: noisy minus clean is the noise alone.
    base = {"fault_types": ("desalignement",), "records_per_class": 1,
                "noise": NoiseConfig(quantization=False)}
    noisy = generate_record(GeneratorConfig(**base), 0)
    clean = generate_record(GeneratorConfig(**{**base, "noise": NoiseConfig.none()}), 0)
    difference = noisy.signal.astype(np.float64) - clean.signal
    assert 0.02 < difference.std() < 0.1  # measurement 0.03 + pink 0.02 + small tones


# ---- signatures (noise layers off) --------------------------------------------------


def test_misalignment_has_2x_and_3x_lines():
    record = clean_record("desalignement")
    omega = record.metadata["speed_hz"]
    freqs, mag = spectrum(record.signal)
    floor = np.median(mag)
    two, three = peak_near(freqs, mag, 2 * omega), peak_near(freqs, mag, 3 * omega)
    assert two > 50 * floor and three > 50 * floor
    assert two > three  # 0.35 against 0.20
    assert dominant_in(freqs, mag, 1, 1000) == pytest.approx(2 * omega, abs=0.3)


def test_imbalance_has_a_1x_line():
    record = clean_record("desequilibre")
    omega = record.metadata["speed_hz"]
    freqs, mag = spectrum(record.signal)
    assert dominant_in(freqs, mag, 1, FS / 2) == pytest.approx(omega, abs=0.3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_oil_whirl_dominant_line_is_sub_synchronous(seed):
    record = clean_record("oilwhirl", seed=seed)
    omega = record.metadata["speed_hz"]
    freqs, mag = spectrum(record.signal)
    dominant = dominant_in(freqs, mag, 1, FS / 2)
    assert 0.42 * omega - 0.2 <= dominant <= 0.48 * omega + 0.2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_looseness_has_a_sub_synchronous_line(seed):
    record = clean_record("jeu", seed=seed)
    omega = record.metadata["speed_hz"]
    freqs, mag = spectrum(record.signal)
    sub = dominant_in(freqs, mag, 1, 0.9 * omega)
    assert 0.43 * omega - 0.2 <= sub <= 0.48 * omega + 0.2
    assert peak_near(freqs, mag, omega) > 50 * np.median(mag)  # and its 1X


def test_cavitation_burst_energy_lies_in_1_5_to_2_5_khz():
    freqs, mag = spectrum(clean_record("cavitation").signal)
    power = mag**2
    inside = power[(freqs >= 1500) & (freqs <= 2500)].mean()
    elsewhere = power[(freqs > 3500) | ((freqs > 10) & (freqs < 500))].mean()
    assert inside > 20 * elsewhere


def test_every_class_generates_a_finite_record():
    config = GeneratorConfig(records_per_class=1, seed=11)
    for index in range(config.n_records):
        record = generate_record(config, index)
        assert np.all(np.isfinite(record.signal)), record.fault


# ---- configuration ------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"fault_types": ("sain", "bogus")}, "unknown fault type 'bogus'; valid: sain"),
    ({"fault_types": ()}, "at least one fault type"),
    ({"records_per_class": 0}, "records_per_class must be an integer >= 1"),
    ({"severities": ("extreme",)}, "unknown severity band 'extreme'"),
    ({"load_range": (90.0, 30.0)}, "load_range must satisfy"),
    ({"temperature_range": (40.0,)}, "temperature_range must be two numbers"),
    ({"speed_variation": -0.1}, "speed_variation must be a number"),
    ({"transient_probability": 1.5}, "transient_probability"),
    ({"split_ratios": (0.7, 0.2, 0.2)}, "split_ratios must sum to 1"),
    ({"split_ratios": (0.0, 0.5, 0.5)}, "train ratio must be > 0"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_generator_config_validate_names_the_bad_field(changes, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        GeneratorConfig(**changes).validate()


def test_generator_config_round_trips_through_json():
    config = GeneratorConfig(fault_types=("jeu", "usure"), records_per_class=3, seed=9,
                             noise=NoiseConfig(emi=False))
    again = GeneratorConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.config_hash() == config.config_hash()
    assert GeneratorConfig(seed=10).config_hash() != GeneratorConfig(seed=11).config_hash()


def test_generator_config_from_dict_refuses_unknown_keys():
    with pytest.raises(InvalidInput, match="unknown generator config keys: colour"):
        GeneratorConfig.from_dict({"colour": "red"})
    with pytest.raises(InvalidInput, match="unknown noise keys: hum"):
        GeneratorConfig.from_dict({"noise": {"hum": True}})


def test_generate_record_refuses_an_index_out_of_range():
    with pytest.raises(InvalidInput, match="record index 2 outside"):
        generate_record(GeneratorConfig(fault_types=("sain",), records_per_class=2), 2)
