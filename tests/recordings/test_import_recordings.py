"""Real-format recordings into datasets: the fixtures' physics, label rules, channels, rates,
windows with overlap, splits by recording, tables, and preprocessing a raw recording again."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.signal

from pipeline.datasets.hdf5 import (
    SPLITS,
    read_geometry,
    read_split,
    read_windows,
    validate_dataset_file,
)
from pipeline.datasets.importer import RecordingLayout, import_recordings
from pipeline.datasets.labels import LabelRule, read_manifest
from pipeline.datasets.matread import read_mat
from pipeline.deploy.preprocess import recording_windows
from pipeline.errors import InvalidInput, MatFileError
from tests.recordings.rig import (
    FOLDERS,
    KINDS,
    RESONANCE_HZ,
    impact_rate,
    rig_signal,
    write_rig_mat_files,
    write_rig_tables,
)

FS = 12_000
PATTERNS = {f"{folder}/*": kind for kind, folder in FOLDERS.items()}
# 2 s records, half-second windows overlapping by half: 7 windows per record.
LAYOUT = RecordingLayout(channels=("*_DE_time", "*_FE_time"), sampling_rate=None, source_fs=FS,
                         record_seconds=2.0, window_seconds=0.5, overlap=0.5)


def _envelope_peak(signal: np.ndarray, fs: int, low: float, high: float) -> tuple[float, float]:
    """The strongest line between ``low`` and ``high`` Hz of the envelope spectrum, and its height over the median."""
    sos = scipy.signal.butter(4, [RESONANCE_HZ - 1000, RESONANCE_HZ + 1000], "bandpass", fs=fs, output="sos")
    envelope = np.abs(scipy.signal.hilbert(scipy.signal.sosfiltfilt(sos, signal)))
    spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
    freqs = np.fft.rfftfreq(envelope.size, 1 / fs)
    band = (freqs >= low) & (freqs <= high)
    return float(freqs[band][np.argmax(spectrum[band])]), float(spectrum[band].max() / np.median(spectrum[band]))


@pytest.mark.parametrize("kind", ["inner_race", "outer_race", "ball"])
def test_each_fault_strikes_at_its_bearing_frequency_in_the_envelope_spectrum(kind):
    rpm = 1772.0
    drive = rig_signal(kind, rpm, FS, 4.0, np.random.default_rng(1))[:, 0]
    peak, prominence = _envelope_peak(drive, FS, 50, 250)
    assert peak == pytest.approx(impact_rate(kind, rpm), abs=1.0)
    assert prominence > 10
    _, normal = _envelope_peak(rig_signal("normal", rpm, FS, 4.0, np.random.default_rng(1))[:, 0], FS, 50, 250)
    assert normal < prominence / 3


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    root = tmp_path_factory.mktemp("rig")
    files = write_rig_mat_files(root, recordings_per_class=4, seconds=4.0)
    return root, files


@pytest.fixture(scope="module")
def imported(rig, tmp_path_factory):
    root, _ = rig
    return import_recordings([root], root, tmp_path_factory.mktemp("out"), "rig",
                             labels=LabelRule(patterns=PATTERNS), layout=LAYOUT, suffixes=(".mat",))


def test_the_rig_files_import_with_their_own_classes_channels_rate_and_windows(imported):
    assert imported.failures == []
    assert imported.class_keys == list(KINDS)  # the patterns' classes, in the order given
    validate_dataset_file(imported.hdf5_path)
    geometry = read_geometry(imported.hdf5_path)
    assert (geometry.sampling_rate, geometry.in_channels, geometry.record_length) == (FS, 2, 2 * FS)
    assert (geometry.window_length, geometry.window_hop, geometry.windows_per_record) == (6000, 3000, 7)
    windows, labels, records = read_windows(imported.hdf5_path, "train")
    assert windows.shape[1:] == (2, 6000) and len(windows) == 7 * len(np.unique(records))
    train = read_split(imported.hdf5_path, "train")
    # Overlap: the second window starts half a window into the record, on both channels.
    np.testing.assert_array_equal(windows[1], train.signals[0][:, 3000:9000])
    meta = train.metadata[0]
    assert meta["rpm"] in (1797.0, 1772.0, 1750.0, 1730.0) and meta["source_fs"] == FS
    assert imported.n_records == 16 * 2  # 4 s recordings, 2 s records


def test_no_recording_lands_in_two_splits_and_every_class_is_in_every_split(imported):
    by_split = {split: read_split(imported.hdf5_path, split) for split in SPLITS}
    files = {split: {m["source_file"] for m in arrays.metadata} for split, arrays in by_split.items()}
    assert not files["train"] & files["val"] and not files["train"] & files["test"] and not files["val"] & files["test"]
    for arrays in by_split.values():
        assert set(arrays.labels.tolist()) == {0, 1, 2, 3}


def test_unlabelled_ambiguous_and_undeclared_files_are_listed_never_guessed(rig, tmp_path):
    root, _ = rig
    rule = LabelRule(patterns={"IR007/*": "inner_race", "*_0.mat": "normal", "OR007/*": "outer_race",
                               "B007/*": "ball", "Normal/*": "normal"})
    result = import_recordings([root], root, tmp_path, "amb", labels=rule, layout=LAYOUT, suffixes=(".mat",),
                               split_ratios=(1.0, 0.0, 0.0))
    reasons = {f["path"]: f["reason"] for f in result.failures}
    assert set(reasons) == {"IR007/IR007_0.mat", "OR007/OR007_0.mat", "B007/B007_0.mat"}
    assert all(r.startswith("ambiguous") for r in reasons.values())
    declared = LabelRule(patterns={"IR007/*": "inner_race", "Normal/*": "normal"}, classes=("normal", "inner_race"))
    partial = import_recordings([root], root, tmp_path, "unl", labels=declared, layout=LAYOUT, suffixes=(".mat",),
                                split_ratios=(1.0, 0.0, 0.0))
    assert sum(f["reason"].startswith("unlabelled") for f in partial.failures) == 8
    assert partial.class_keys == ["normal", "inner_race"]
    with pytest.raises(InvalidInput, match="not among the declared classes"):
        LabelRule(patterns={"IR007/*": "inner_race"}, classes=("normal", "ball"))


def test_a_class_with_too_few_recordings_to_split_is_refused_with_the_reason(rig, tmp_path):
    root, _ = rig
    rule = LabelRule(patterns={"Normal/Normal_0.mat": "normal", "IR007/*": "inner_race"})
    with pytest.raises(InvalidInput, match="fewer than 3 recordings"):
        import_recordings([root / "Normal" / "Normal_0.mat", root / "IR007"], root, tmp_path, "few",
                          labels=rule, layout=LAYOUT)


def test_resampling_to_a_chosen_rate_and_a_missing_rate_for_native(rig, tmp_path):
    root, _ = rig
    layout = RecordingLayout(channels=("*_DE_time",), sampling_rate=20_480, source_fs=FS, record_seconds=1.0)
    result = import_recordings([root], root, tmp_path, "resampled", labels=LabelRule(patterns=PATTERNS),
                               layout=layout)
    geometry = read_geometry(result.hdf5_path)
    assert (geometry.sampling_rate, geometry.record_length, geometry.in_channels) == (20_480, 20_480, 1)
    assert read_split(result.hdf5_path, "train").signals.shape[1:] == (20_480,)
    with pytest.raises(MatFileError, match="no sampling rate"):
        import_recordings([root], root, tmp_path, "rateless", labels=LabelRule(patterns=PATTERNS),
                          layout=RecordingLayout(channels=("*_DE_time",), sampling_rate=None))


def test_a_channel_pattern_must_match_one_variable_per_file(rig, tmp_path):
    root, _ = rig
    layout = RecordingLayout(channels=("*_time",), sampling_rate=None, source_fs=FS)
    with pytest.raises(MatFileError, match=r"channel '\*_time' matches 2 arrays"):
        import_recordings([root / "IR007"], root, tmp_path, "two", labels=LabelRule(patterns=PATTERNS), layout=layout)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "npy"])
def test_tables_import_through_a_manifest_with_its_groups_and_rates(fmt, tmp_path):
    root = tmp_path / "tables"
    manifest = write_rig_tables(root, fmt=fmt, recordings_per_class=3, seconds=2.0)
    rows = read_manifest(manifest, root)
    layout = RecordingLayout(channels=("DE", "FE") if fmt != "npy" else ("ch0", "ch1"), sampling_rate=None,
                             record_seconds=1.0, window_seconds=0.5)
    result = import_recordings([], root, tmp_path / "out", f"tab-{fmt}", labels=LabelRule(manifest=rows), layout=layout)
    assert result.failures == [] and result.class_keys == sorted(KINDS)
    geometry = read_geometry(result.hdf5_path)
    assert (geometry.sampling_rate, geometry.in_channels) == (FS, 2)
    train = read_split(result.hdf5_path, "train")
    assert {m["recording"] for m in train.metadata} <= {r["group"] for r in rows.rows.values()}
    assert all(m["rpm"] > 1700 for m in train.metadata)


def test_a_raw_recording_prepared_from_the_model_metadata_gives_the_dataset_windows(rig, tmp_path):
    root, files = rig
    result = import_recordings([root], root, tmp_path, "norm", labels=LabelRule(patterns=PATTERNS),
                               layout=LAYOUT, normalize="record", suffixes=(".mat",))
    geometry = read_geometry(result.hdf5_path)
    test = read_split(result.hdf5_path, "test")
    rel = test.metadata[0]["source_file"]
    mine = [k for k, m in enumerate(test.metadata) if m["source_file"] == rel]
    raw = read_mat(root / rel, channels=list(LAYOUT.channels), rate=None, source_fs=FS, find_label=False)
    windows, record_ids = recording_windows(raw.signal, FS, geometry.describe())
    stored, _, _ = read_windows(result.hdf5_path, "test")
    per = geometry.windows_per_record
    expected = np.concatenate([stored[k * per:(k + 1) * per] for k in mine])
    np.testing.assert_allclose(windows, expected, atol=1e-5)
    assert record_ids.max() + 1 == len(mine)
    with pytest.raises(InvalidInput, match="takes 2 channel"):
        recording_windows(raw.signal[0], FS, geometry.describe())


def test_files_without_a_rate_variable_keep_the_old_default_when_no_rule_is_given(tmp_path):
    # The generator's world is unchanged: a label folder, one channel found by name, 20,480 Hz.
    root = tmp_path / "legacy"
    (root / "sain").mkdir(parents=True)
    scipy.io.savemat(root / "sain" / "a.mat", {"x": np.random.default_rng(0).standard_normal(102_400)})
    (root / "jeu").mkdir()
    scipy.io.savemat(root / "jeu" / "b.mat", {"x": np.random.default_rng(1).standard_normal(102_400)})
    result = import_recordings([root], root, tmp_path / "out", "legacy", split_ratios=(1.0, 0.0, 0.0))
    geometry = read_geometry(result.hdf5_path)
    assert geometry.class_keys[0] == "sain" and geometry.num_classes == 11
    assert (geometry.sampling_rate, geometry.record_length, geometry.window_length) == (20_480, 102_400, 20_480)


def test_classical_features_of_a_campaign_are_taken_at_the_datasets_rate(imported):
    from pipeline.features.extract import extract_window_features
    from pipeline.hpo.trial import cached_features
    from pipeline.progress import never_stop, no_progress
    from pipeline.training import load_training_data

    data = load_training_data(imported.hdf5_path)
    features = cached_features(data, f"rig-rate-{imported.config_hash}")(data.val.windows, no_progress, never_stop)
    np.testing.assert_array_equal(features, extract_window_features(data.val.windows, FS).values)
    assert not np.allclose(features, extract_window_features(data.val.windows, 20_480).values)


def test_each_window_carries_its_recordings_shaft_speed_through_classical_training(imported, tmp_path):
    from pipeline.evaluation.predictors import load_predictor, read_test_windows
    from pipeline.training import load_training_data
    from pipeline.training.classical import default_features, train_classical

    # Each window carries the rpm read from its recording (X...RPM), in Hz, in memory and
    # in a split read from the file a record at a time.
    data = load_training_data(imported.hdf5_path)
    stored = load_training_data(imported.hdf5_path, memory_budget_bytes=1)
    assert stored.stored
    for split in SPLITS:
        rpm = [m["rpm"] for m in read_split(imported.hdf5_path, split).metadata]
        expected = np.repeat(np.asarray(rpm) / 60.0, 7)
        np.testing.assert_array_equal(getattr(data, split).shaft_hz, expected)
        np.testing.assert_array_equal(getattr(stored, split).shaft_hz, expected)

    # Training hands every window's speed to the features, and a saved model's predictor
    # given the test windows' speeds reproduces the test predictions training recorded.
    seen = []

    def recording(windows, on_progress, should_stop, shaft_hz=None):
        seen.append(shaft_hz)
        return default_features(windows, on_progress, should_stop, shaft_hz, fs=FS)

    train_classical("rf", {"n_estimators": 20}, data, recording, tmp_path)
    np.testing.assert_array_equal(np.concatenate(seen),
                                  np.concatenate([data.train.shaft_hz, data.val.shaft_hz, data.test.shaft_hz]))
    windows, _, speeds = read_test_windows(imported.hdf5_path)
    np.testing.assert_array_equal(speeds, data.test.shaft_hz)
    predictor = load_predictor("rf", tmp_path / "model.skops", len(KINDS), fs=FS)
    recorded = np.load(tmp_path / "test_predictions.npz")["probabilities"]
    np.testing.assert_allclose(predictor.predict_proba(windows, speeds), recorded, atol=1e-6)


def test_features_selected_over_two_channels_train_a_classical_model(imported, tmp_path):
    from pipeline.evaluation.feature_sets import (
        extract_dataset_features,
        load_selection,
        selection_features_fn,
    )
    from pipeline.evaluation.rankings import selection_report
    from pipeline.training import load_training_data
    from pipeline.training.classical import train_classical

    # Given the two-channel dataset's feature set (72 columns, "<channel>:<feature>")
    counts = {split: len(read_split(imported.hdf5_path, split).labels) for split in SPLITS}
    features = extract_dataset_features(imported.hdf5_path, counts)
    assert len(features.names) == 72 and features.names[0].endswith(":rms")
    # When 40 of them (more than one channel holds) are selected and saved
    X, y = features.split("train")
    _, _, saved = selection_report(X, y, features.names, tmp_path, method="select_k_best", k=40)
    selection = load_selection(saved)
    assert len(selection["names"]) == 40 and all(":" in name for name in selection["names"])
    # Then a classical model trains on exactly those columns, well above chance (0.25)
    data = load_training_data(imported.hdf5_path)
    features_fn = selection_features_fn(selection, fs=FS)
    train_columns = features_fn(data.train.windows, lambda *a, **k: None, lambda: False, data.train.shaft_hz)
    np.testing.assert_allclose(train_columns, X[:, selection["indices"]], rtol=1e-9)
    result = train_classical("rf", {"n_estimators": 50}, data, features_fn, tmp_path / "rf")
    assert result.test["window_accuracy"] > 0.6
    # and one-channel windows are refused by a selection made over two
    with pytest.raises(InvalidInput, match="2 channel"):
        features_fn(data.train.windows[:, 0], lambda *a, **k: None, lambda: False)
