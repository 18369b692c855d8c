"""MAT export and import: formats, labels, resampling, bad files and unsafe paths."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from pipeline.datasets import (
    export_mat,
    generate_dataset,
    import_mat_files,
    read_mat,
    read_split,
    resolve_under_root,
    validate_dataset_file,
)
from pipeline.datasets.matio import export_dataset_mat
from pipeline.domain import FS, RECORD_LENGTH
from pipeline.errors import MatFileError, UnsafePath
from pipeline.signals import GeneratorConfig, generate_record

CONFIG = GeneratorConfig(fault_types=("desalignement", "mixed_cavit_jeu"), records_per_class=3)


def tone(n: int, fs: float, hz: float = 200.0) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(n) / fs)


def write_v73(path: Path, variables: dict, struct: dict | None = None) -> Path:
    """Write a MAT v7.3 file as MATLAB does: 512-byte user block, MATLAB header, HDF5."""
    def put(group, name, value):
        if isinstance(value, str):
            data = np.array([ord(c) for c in value], dtype=np.uint16).reshape(-1, 1)
            group[name] = data
            group[name].attrs["MATLAB_class"] = np.bytes_("char")
            group[name].attrs["MATLAB_int_decode"] = np.int32(2)
        else:
            # MATLAB is column-major: an N×1 column is stored as HDF5 shape (1, N).
            group[name] = np.atleast_2d(np.asarray(value, dtype=np.float64))
            group[name].attrs["MATLAB_class"] = np.bytes_("double")

    with h5py.File(path, "w", userblock_size=512) as handle:
        for name, value in variables.items():
            put(handle, name, value)
        if struct is not None:
            group = handle.create_group("info")
            group.attrs["MATLAB_class"] = np.bytes_("struct")
            for name, value in struct.items():
                put(group, name, value)
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with path.open("r+b") as handle:
        handle.write(header)
    return path


# ---- reading ----------------------------------------------------------------------------


def test_export_mat_round_trips_signal_label_and_fs(tmp_path):
    record = generate_record(CONFIG, 4)
    read = read_mat(export_mat(record, tmp_path / "r.mat"))
    assert np.array_equal(read.signal, record.signal)
    assert (read.label, read.fs, read.source_fs, read.format) == ("mixed_cavit_jeu", FS, FS, "v5")
    assert read.metadata["seed"] == record.metadata["seed"]
    assert read.metadata["speed_hz"] == pytest.approx(record.metadata["speed_hz"])


def test_read_mat_reads_a_matlab_v73_file(tmp_path):
    signal = tone(RECORD_LENGTH, FS)
    path = write_v73(tmp_path / "rec.mat", {"signal": signal, "label": "oilwhirl", "fs": FS},
                     struct={"load": 75.0, "operator": "night shift"})
    assert path.read_bytes()[512:520] == b"\x89HDF\r\n\x1a\n"
    read = read_mat(path)
    assert read.format == "v7.3" and read.label == "oilwhirl"
    assert np.allclose(read.signal, signal, atol=1e-6)
    assert read.metadata["load"] == 75.0 and read.metadata["operator"] == "night shift"


def test_read_mat_resamples_another_rate_to_20480_hz(tmp_path):
    fs = 25_600
    path = tmp_path / "other_rate.mat"
    scipy.io.savemat(path, {"data": tone(5 * fs, fs), "Fs": float(fs), "fault_type": "usure"})
    read = read_mat(path)
    assert read.signal.size == RECORD_LENGTH and read.source_fs == fs
    spectrum = np.abs(np.fft.rfft(read.signal))
    peak = np.fft.rfftfreq(read.signal.size, 1 / FS)[np.argmax(spectrum)]
    assert peak == pytest.approx(200.0, abs=0.3)
    assert read.label == "usure"


def test_read_mat_takes_the_label_from_a_directory_name_longest_key_first(tmp_path):
    folder = tmp_path / "mixed_cavit_jeu"
    folder.mkdir()
    scipy.io.savemat(folder / "rec_001.mat", {"vibration": tone(1000, FS), "rpm": 3600.0})
    read = read_mat(folder / "rec_001.mat", root=tmp_path)
    assert read.label == "mixed_cavit_jeu"  # not "jeu"
    assert read.variable == "vibration"  # largest numeric array
    assert read.metadata["rpm"] == 3600.0 and read.metadata["fs_assumed"] is True


def test_read_mat_reads_v4_files_with_a_label_from_the_file_name(tmp_path):
    path = tmp_path / "desequilibre_07.mat"
    scipy.io.savemat(path, {"y": tone(2000, FS)}, format="4")
    read = read_mat(path)
    assert read.format == "v4" and read.label == "desequilibre"


def test_read_mat_refuses_an_empty_file(tmp_path):
    (tmp_path / "empty.mat").write_bytes(b"")
    with pytest.raises(MatFileError, match="empty file"):
        read_mat(tmp_path / "empty.mat")


def test_read_mat_refuses_a_file_that_is_not_mat(tmp_path):
    (tmp_path / "notes.mat").write_text("these are not the samples you are looking for\n" * 9)
    with pytest.raises(MatFileError, match="not a MAT file"):
        read_mat(tmp_path / "notes.mat")


def test_read_mat_refuses_a_truncated_file(tmp_path):
    path = tmp_path / "cut.mat"
    scipy.io.savemat(path, {"x": tone(50_000, FS)}, do_compression=True)
    path.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(MatFileError, match="truncated"):
        read_mat(path)


def test_read_mat_refuses_a_file_without_a_numeric_array(tmp_path):
    scipy.io.savemat(tmp_path / "words.mat", {"comment": "no samples here", "k": 3.0})
    with pytest.raises(MatFileError, match="no numeric array"):
        read_mat(tmp_path / "words.mat")


def test_read_mat_refuses_enormous_declared_dimensions_without_allocating(tmp_path):
    path = tmp_path / "huge.mat"
    scipy.io.savemat(path, {"x": np.ones((10, 1))}, do_compression=False)
    raw = bytearray(path.read_bytes())
    # v5 layout: 128-byte header, matrix tag (8), array flags (16), dims tag (8), dims.
    assert np.frombuffer(bytes(raw[160:168]), dtype="<i4").tolist() == [10, 1]
    raw[160:168] = np.array([100_000, 100_000], dtype="<i4").tobytes()
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        with pytest.raises(MatFileError, match="declares 10000000000 elements"):
            read_mat(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


# ---- paths --------------------------------------------------------------------------


def test_resolve_under_root_refuses_paths_that_escape(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.mat").write_bytes(b"x")
    outside = tmp_path / "secret.mat"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "link.mat")
    assert resolve_under_root("sub/a.mat", root) == (root / "sub" / "a.mat").resolve()
    for bad in ("../secret.mat", "sub/../../secret.mat", str(outside), "/etc/passwd",
                "link.mat"):
        with pytest.raises(UnsafePath):
            resolve_under_root(bad, root)


def test_import_mat_files_refuses_path_traversal(tmp_path):
    (tmp_path / "root").mkdir()
    with pytest.raises(UnsafePath):
        import_mat_files(["../elsewhere"], tmp_path / "root", tmp_path / "out", "imp")


# ---- import -------------------------------------------------------------------------


def test_import_mat_files_lists_failures_and_imports_the_rest(tmp_path):
    root = tmp_path / "root"
    (root / "jeu").mkdir(parents=True)
    scipy.io.savemat(root / "jeu" / "long.mat", {"x": tone(int(1.5 * RECORD_LENGTH), FS)})
    scipy.io.savemat(root / "two.mat", {"signal": tone(2 * RECORD_LENGTH, FS), "label": 5.0})
    scipy.io.savemat(root / "short.mat", {"x": tone(1000, FS), "label": "sain"})
    scipy.io.savemat(root / "nolabel.mat", {"x": tone(RECORD_LENGTH, FS)})
    (root / "notes.mat").write_text("plain text, not MATLAB\n" * 10)
    progress = []
    result = import_mat_files([str(root)], root, tmp_path / "out", "imp-1",
                              on_progress=lambda f, status="", **m: progress.append(f))
    assert (result.n_files, result.n_records) == (5, 3)
    assert result.class_counts == {"jeu": 1, "cavitation": 2}
    reasons = {f["path"]: f["reason"] for f in result.failures}
    assert set(reasons) == {"short.mat", "nolabel.mat", "notes.mat"}
    assert "too short" in reasons["short.mat"] and "no label" in reasons["nolabel.mat"]
    assert "not a MAT file" in reasons["notes.mat"]
    info = validate_dataset_file(result.hdf5_path)
    assert info["attrs"]["source"] == "mat_import" and info["n_records"] == 3
    assert progress[-1] == 1.0 and len(progress) >= 5
    assert not (tmp_path / "out" / "imp-1.staging.h5").exists()


def test_import_mat_files_raises_when_no_file_can_be_read(tmp_path):
    (tmp_path / "a.mat").write_bytes(b"")
    (tmp_path / "b.mat").write_text("nope " * 40)
    with pytest.raises(MatFileError, match=r"no MAT file could be imported \(2 failed\)"):
        import_mat_files(["a.mat", "b.mat"], tmp_path, tmp_path / "out", "imp-2")
    assert not list((tmp_path / "out").iterdir())


def test_generated_mat_export_imports_back_as_the_same_records(tmp_path):
    made = generate_dataset(CONFIG, tmp_path, "gen", formats=("hdf5", "mat"), workers=1)
    assert len(os.listdir(made.mat_dir)) == CONFIG.n_records
    result = import_mat_files([made.mat_dir], tmp_path, tmp_path, "back", seed=3)
    assert result.failures == [] and result.class_counts == made.class_counts
    original = read_split(made.hdf5_path, "train")
    imported = np.concatenate([read_split(result.hdf5_path, s).signals
                               for s in ("train", "val", "test")])
    for signal in original.signals:
        assert any(np.array_equal(signal, other) for other in imported)


def test_export_dataset_mat_writes_one_file_per_record(tmp_path):
    made = generate_dataset(CONFIG, tmp_path, "gen2", workers=1)
    folder = export_dataset_mat(made.hdf5_path, tmp_path, "gen2")
    names = sorted(os.listdir(folder))
    assert folder.name == "gen2_mat" and len(names) == CONFIG.n_records
    assert names[0].startswith("test_000000_")
