"""MAT import against hostile and damaged files (issue 28), each built here in the test."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from pipeline.datasets import export_mat, import_mat_files, read_mat
from pipeline.domain import FS, RECORD_LENGTH
from pipeline.errors import InvalidInput, MatFileError
from pipeline.signals import GeneratorConfig, generate_record
from tests.pipeline.test_matio import tone

REPO = Path(__file__).resolve().parents[2]


# ---- building v5 files by hand --------------------------------------------------------


def element(mdtype: int, data: bytes) -> bytes:
    """A v5 data element: tag, data, padding to 8 bytes."""
    return struct.pack("<II", mdtype, len(data)) + data + b"\0" * (-len(data) % 8)


def matrix_head(name: bytes, mclass: int, dims: tuple[int, ...], body_bytes: int) -> bytes:
    """A miMATRIX tag and header (flags, dims, name) for a body of ``body_bytes``."""
    header = (element(6, struct.pack("<II", mclass, 0))
              + element(5, struct.pack(f"<{len(dims)}i", *dims)) + element(1, name))
    return struct.pack("<II", 14, len(header) + body_bytes) + header


def matrix(name: bytes, mclass: int, dims: tuple[int, ...], body: bytes) -> bytes:
    """A whole miMATRIX element."""
    return matrix_head(name, mclass, dims, len(body)) + body


def v5_file(path: Path, *elements: bytes) -> Path:
    """Write a MAT v5 file (little-endian) holding ``elements``."""
    header = (b"MATLAB 5.0 MAT-file, written by a test".ljust(116, b" ") + b"\0" * 8
              + struct.pack("<H", 0x0100) + b"IM")
    path.write_bytes(header + b"".join(elements))
    return path


def doubles(name: bytes, values: np.ndarray) -> bytes:
    """A double column vector."""
    data = np.ascontiguousarray(values, dtype="<f8").tobytes()
    return matrix(name, 6, (values.size, 1), element(9, data))


def zeros_zlib(prefix: bytes, n_zeros: int) -> bytes:
    """A zlib stream of ``prefix`` then ``n_zeros`` zero bytes, built in time O(output).

    Deflate segments ending in a full flush stand alone, so one compressed MiB of zeros
    is repeated; the Adler-32 of zeros follows from its definition (B grows by A a byte).
    """
    def segment(data: bytes, final: bool) -> bytes:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return packer.compress(data) + packer.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)

    mib = 1 << 20
    assert n_zeros % mib == 0 and n_zeros >= mib
    body = (segment(prefix, False) + segment(bytes(mib), False) * (n_zeros // mib - 1)
            + segment(bytes(mib), True))
    adler = zlib.adler32(prefix)
    low, high = adler & 0xFFFF, (adler >> 16) + n_zeros * (adler & 0xFFFF)
    return b"\x78\xda" + body + struct.pack(">I", (high % 65521) << 16 | low)


def struct_bomb(n_zeros: int) -> bytes:
    """A compressed struct ``metadata`` whose one field declares ``n_zeros`` zero bytes."""
    field_head = matrix_head(b"", 9, (1 << 20, n_zeros >> 20), 8 + n_zeros)  # uint8, MiB columns
    field_names = element(1, b"pad".ljust(32, b"\0"))
    name_length = struct.pack("<Ii", 4 << 16 | 5, 32)  # a small element: int32 32
    body_bytes = len(name_length) + len(field_names) + len(field_head) + 8 + n_zeros
    prefix = (matrix_head(b"metadata", 2, (1, 1), body_bytes) + name_length + field_names
              + field_head + struct.pack("<II", 2, n_zeros))
    stream = zeros_zlib(prefix, n_zeros)
    return struct.pack("<II", 15, len(stream)) + stream


def test_zeros_zlib_inflates_to_its_prefix_and_zeros():
    stream = zeros_zlib(b"header bytes", 3 << 20)
    assert zlib.decompress(stream) == b"header bytes" + bytes(3 << 20)


def test_hand_built_v5_files_read_like_matlab_ones(tmp_path):
    path = v5_file(tmp_path / "jeu_hand.mat", doubles(b"x", tone(4000, FS)))
    read = read_mat(path)
    assert read.label == "jeu" and read.signal.size == 4000


# ---- 1. confinement: nothing outside the file is read ---------------------------------


def _secret(tmp_path: Path) -> Path:
    secret = tmp_path / "elsewhere" / "secret.h5"
    secret.parent.mkdir()
    with h5py.File(secret, "w") as handle:
        handle["data"] = tone(2 * RECORD_LENGTH, FS)
    return secret


def _external_link(path: Path, secret: Path) -> None:
    with h5py.File(path, "w") as handle:
        handle["signal"] = h5py.ExternalLink(str(secret), "data")


def _virtual_dataset(path: Path, secret: Path) -> None:
    layout = h5py.VirtualLayout(shape=(2 * RECORD_LENGTH,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(secret), "data", shape=(2 * RECORD_LENGTH,))
    with h5py.File(path, "w") as handle:
        handle.create_virtual_dataset("signal", layout)


def _external_storage(path: Path, secret: Path) -> None:
    raw = secret.with_suffix(".raw")
    raw.write_bytes(tone(2 * RECORD_LENGTH, FS).astype("<f8").tobytes())
    with h5py.File(path, "w") as handle:
        handle.create_dataset("signal", shape=(2 * RECORD_LENGTH,), dtype="<f8",
                              external=[(str(raw), 0, 2 * RECORD_LENGTH * 8)])


@pytest.mark.parametrize(
    ("build", "reason"),
    [(_external_link, "external link"), (_virtual_dataset, "virtual dataset"),
     (_external_storage, "external file")],
    ids=["external-link", "virtual-dataset", "external-storage"],
)
def test_v73_file_reaching_outside_itself_is_refused_and_the_others_import(tmp_path, build, reason):
    root = tmp_path / "root"
    (root / "jeu").mkdir(parents=True)
    build(root / "jeu" / "leak.mat", _secret(tmp_path))
    scipy.io.savemat(root / "jeu" / "good.mat", {"x": tone(RECORD_LENGTH, FS)})
    with pytest.raises(MatFileError, match=reason):
        read_mat(root / "jeu" / "leak.mat", root=root)
    result = import_mat_files([str(root)], root, tmp_path / "out", "conf")
    assert result.n_records == 1
    assert [f["path"] for f in result.failures] == ["jeu/leak.mat"]
    assert "another file" in result.failures[0]["reason"]


# ---- 2. one file's problem is that file's failure ---------------------------------------


def test_dangling_links_and_an_absurd_fs_fail_their_files_only(tmp_path):
    root = tmp_path / "root"
    (root / "sain").mkdir(parents=True)
    with h5py.File(root / "sain" / "passwd.mat", "w") as handle:
        handle["signal"] = h5py.ExternalLink("/etc/passwd", "data")
    with h5py.File(root / "sain" / "nowhere.mat", "w") as handle:
        handle["signal"] = h5py.SoftLink("/nowhere")
    scipy.io.savemat(root / "sain" / "fast.mat", {"x": tone(RECORD_LENGTH, FS), "fs": 1e9})
    scipy.io.savemat(root / "sain" / "good.mat", {"x": tone(RECORD_LENGTH, FS)})
    result = import_mat_files([str(root)], root, tmp_path / "out", "one-by-one")
    reasons = {f["path"]: f["reason"] for f in result.failures}
    assert result.n_records == 1 and set(reasons) == {
        "sain/passwd.mat", "sain/nowhere.mat", "sain/fast.mat"}
    assert "external link" in reasons["sain/passwd.mat"]
    assert "soft link to '/nowhere'" in reasons["sain/nowhere.mat"]
    assert "outside" in reasons["sain/fast.mat"] and "1e+09 Hz" in reasons["sain/fast.mat"]


def test_a_sampling_rate_far_below_the_records_is_refused_before_resampling(tmp_path):
    # fs = 5 Hz would upsample 4096x, with a polyphase filter as long as the factor.
    scipy.io.savemat(tmp_path / "slow.mat", {"x": tone(100, 5.0), "fs": 5.0, "label": "sain"})
    with pytest.raises(MatFileError, match=r"outside 20\.48 to 2\.048e\+07 Hz"):
        read_mat(tmp_path / "slow.mat")


def test_a_memory_error_reading_one_file_fails_that_file_only(tmp_path, monkeypatch):
    from pipeline.datasets import recording_reader as mat_import

    for name in ("a", "b"):
        scipy.io.savemat(tmp_path / f"jeu_{name}.mat", {"x": tone(RECORD_LENGTH, FS)})
    real = mat_import.read_signal

    def tight(plan, scratch=None):  # type: ignore[no-untyped-def]
        if plan.path.name == "jeu_a.mat":
            raise MemoryError
        return real(plan, scratch)

    monkeypatch.setattr(mat_import, "read_signal", tight)
    result = import_mat_files(["."], tmp_path, tmp_path / "out", "mem")
    assert result.n_records == 1
    assert result.failures == [{"path": "jeu_a.mat", "reason": "ran out of memory reading it"}]


# ---- 3. decompression bomb ------------------------------------------------------------

_PEAK_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from pipeline.datasets import read_mat
    from pipeline.errors import MatFileError
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        read_mat(sys.argv[1])
        outcome = "read"
    except MatFileError as error:
        outcome = str(error)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "peak_kib": after - before}))
""")


def test_compressed_struct_bomb_is_refused_within_a_memory_ceiling(tmp_path):
    # 3 MB on disk, 3 GiB inflated: the old reader inflated it whole.
    path = v5_file(tmp_path / "bomb.mat", doubles(b"x", tone(4000, FS)), struct_bomb(3 << 30))
    assert path.stat().st_size < 4 << 20
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert ("variable 'metadata' refused: metadata and scalars would take over 16777216 bytes"
            in report["outcome"])
    assert report["peak_kib"] < 64 * 1024  # the ceiling: 64 MiB over what the imports took


def test_struct_within_the_budget_still_reads(tmp_path):
    path = v5_file(tmp_path / "sain_small.mat", doubles(b"x", tone(4000, FS)),
                   struct_bomb(1 << 20))
    assert read_mat(path).metadata["pad"] is None  # data, not metadata: json_safe drops it


def test_v73_chunk_that_inflates_past_its_size_is_refused_before_hdf5_reads_it(tmp_path):
    # HDF5's own inflater grows its buffer for as long as a chunk keeps inflating.
    path = tmp_path / "sain_chunk.mat"
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("signal", data=tone(RECORD_LENGTH, FS), chunks=(4096,),
                                        compression="gzip")
        dataset.id.write_direct_chunk((0,), zeros_zlib(b"", 256 << 20), 0)
    assert path.stat().st_size < 2 << 20
    with pytest.raises(MatFileError, match="a compressed chunk inflates past its 32768 bytes"):
        read_mat(path)


def test_v73_compressed_shuffled_checksummed_data_still_reads(tmp_path):
    path = tmp_path / "sain_gzip.mat"
    signal = tone(RECORD_LENGTH, FS)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("signal", data=signal, chunks=(4096,), compression="gzip",
                              shuffle=True, fletcher32=True)
        handle.create_dataset("other", data=signal, chunks=(4096,), compression="lzf")
    np.testing.assert_allclose(read_mat(path).signal, signal, atol=1e-6)


def test_v73_data_through_a_filter_it_cannot_check_is_refused(tmp_path):
    path = tmp_path / "sain_lzf.mat"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("signal", data=tone(RECORD_LENGTH, FS), chunks=(4096,),
                              compression="lzf")
    with pytest.raises(MatFileError, match=r"filters \[32000\]; only deflate"):
        read_mat(path)


# ---- 4. damaged files are failures ----------------------------------------------------


def _recording(path: Path) -> Path:
    """The layout of a public bearing-rig file: v5, uncompressed, three channels and rpm."""
    n = 121_991  # 10 s at 12 kHz
    scipy.io.savemat(path, {"X097_DE_time": tone(n, 12_000).reshape(-1, 1),
                            "X097_FE_time": tone(n, 12_000, 90).reshape(-1, 1),
                            "X097_BA_time": tone(n, 12_000, 30).reshape(-1, 1),
                            "X097RPM": 1796.0}, do_compression=False)
    return path


def test_first_half_of_a_recording_is_refused_as_truncated(tmp_path):
    (tmp_path / "sain").mkdir()
    whole = _recording(tmp_path / "sain" / "whole.mat")
    data = whole.read_bytes()
    (tmp_path / "sain" / "half.mat").write_bytes(data[:len(data) // 2])
    assert read_mat(whole, root=tmp_path).variable == "X097_DE_time"
    with pytest.raises(OSError):  # scipy itself refuses the whole file
        scipy.io.loadmat(tmp_path / "sain" / "half.mat")
    with pytest.raises(MatFileError, match=r"truncated: variable 'X097_FE_time' declares "
                                           r"975992 bytes"):
        read_mat(tmp_path / "sain" / "half.mat", root=tmp_path)
    result = import_mat_files(["sain"], tmp_path, tmp_path / "out", "halves")
    assert [f["path"] for f in result.failures] == ["sain/half.mat"]


def test_a_cut_v4_file_is_refused_as_truncated(tmp_path):
    path = tmp_path / "usure_v4.mat"
    scipy.io.savemat(path, {"y": tone(5000, FS), "z": tone(5000, FS)}, format="4")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MatFileError, match="truncated: a v4 variable"):
        read_mat(path)


def test_a_signal_beyond_float32_is_refused_not_stored_as_infinity(tmp_path):
    signal = tone(4000, FS)
    signal[7] = 1e300
    scipy.io.savemat(tmp_path / "sain_huge.mat", {"x": signal})
    with pytest.raises(MatFileError, match="beyond float32's range"):
        read_mat(tmp_path / "sain_huge.mat")


def test_reading_logical_values_as_such_keeps_complex_ones_complex(tmp_path):
    # Booleans come from reading in MATLAB's class, which would drop an imaginary part.
    scipy.io.savemat(tmp_path / "sain_c.mat", {"x": tone(4000, FS) * (1 + 1j)})
    with pytest.raises(MatFileError, match="not a real numeric array"):
        read_mat(tmp_path / "sain_c.mat")
    scipy.io.savemat(tmp_path / "sain_m.mat", {"x": tone(4000, FS), "info": {
        "z": np.array([1 + 2j]), "ok": True}})
    metadata = read_mat(tmp_path / "sain_m.mat").metadata
    assert metadata["z"] is None and metadata["ok"] == 1  # as stored: not silently real


# ---- 5. labels: whole tokens, documented precedence, disagreement refused ---------------


def _plain(path: Path, **extra: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"x": tone(RECORD_LENGTH, FS), **extra})
    return path


def test_label_comes_from_the_folder_when_the_file_name_holds_no_whole_key(tmp_path):
    path = _plain(tmp_path / "sain" / "mesure_jeudi.mat")
    assert read_mat(path, root=tmp_path).label == "sain"  # "jeudi" is not "jeu"


@pytest.mark.parametrize(("name", "label"), [
    ("saint_etienne.mat", None), ("jeu01.mat", "jeu"), ("run-7_USURE.mat", "usure"),
    ("train_000001_mixed_cavit_jeu.mat", "mixed_cavit_jeu"), ("oilwhirl.mat", "oilwhirl"),
])
def test_file_names_name_a_class_by_whole_tokens_only(tmp_path, name, label):
    assert read_mat(_plain(tmp_path / name), root=tmp_path).label == label


@pytest.mark.parametrize(("where", "extra", "first", "second"), [
    ("sain/jeu_01.mat", {}, "folder 'sain' says 'sain'", "file name 'jeu_01.mat' says 'jeu'"),
    ("sain/run.mat", {"label": "jeu"}, "variable 'label' says 'jeu'", "folder 'sain' says 'sain'"),
    ("run.mat", {"label": "jeu", "fault": "sain"}, "variable 'label' says 'jeu'",
     "variable 'fault' says 'sain'"),
    ("cavitation/jeu/run.mat", {}, "folder 'jeu' says 'jeu'", "folder 'cavitation'"),
    ("sain_vs_jeu.mat", {}, "file name 'sain_vs_jeu.mat' says 'sain'", "says 'jeu'"),
])
def test_sources_that_disagree_on_the_label_fail_naming_both(tmp_path, where, extra, first, second):
    path = _plain(tmp_path / where, **extra)
    with pytest.raises(MatFileError, match="label sources disagree") as raised:
        read_mat(path, root=tmp_path)
    assert first in str(raised.value) and second in str(raised.value)


def test_a_label_in_the_request_comes_first_and_must_agree(tmp_path):
    root = tmp_path / "root"
    _plain(root / "run_a.mat")
    _plain(root / "run_b.mat", label="jeu")
    result = import_mat_files(["."], root, tmp_path / "out", "req", label="usure")
    assert result.class_counts == {"usure": 1}
    assert "the request says 'usure' but variable 'label' says 'jeu'" in result.failures[0]["reason"]
    with pytest.raises(InvalidInput, match="not a class key"):
        import_mat_files(["."], root, tmp_path / "out", "req2", label="rust")


# ---- 6. the signal is never MATLAB's own bytes, and a named one is never replaced --------


def test_function_workspace_is_never_taken_as_the_signal(tmp_path):
    # MATLAB saves function handles' workspace as an unnamed uint8-backed double array.
    workspace = matrix(b"", 6, (1, 300_000), element(2, bytes(range(256)) * 1171 + bytes(224)))
    path = v5_file(tmp_path / "sain_fn.mat", doubles(b"vibration", tone(4000, FS)), workspace)
    read = read_mat(path)
    assert read.variable == "vibration" and read.signal.size == 4000


def test_an_empty_signal_variable_is_a_failure_not_replaced(tmp_path):
    scipy.io.savemat(tmp_path / "sain_empty.mat", {"signal": np.zeros((0, 0)),
                                                   "other": tone(4000, FS)})
    with pytest.raises(MatFileError, match="variable 'signal' is empty"):
        read_mat(tmp_path / "sain_empty.mat")


# ---- 7. smaller things ----------------------------------------------------------------


def test_a_link_out_of_the_root_inside_a_folder_is_refused_alone(tmp_path):
    root = tmp_path / "root"
    _plain(root / "jeu" / "good.mat")
    outside = _plain(tmp_path / "elsewhere" / "jeu_secret.mat")
    os.symlink(outside, root / "jeu" / "link.mat")
    os.symlink(root / "jeu" / "gone.mat", root / "jeu" / "dangling.mat")
    result = import_mat_files([str(root)], root, tmp_path / "out", "links")
    reasons = {f["path"]: f["reason"] for f in result.failures}
    assert result.n_records == 1 and result.n_files == 3
    assert "outside the import root" in reasons["jeu/link.mat"]
    assert "does not exist" in reasons["jeu/dangling.mat"]


def test_when_every_file_fails_the_error_keeps_all_reasons(tmp_path):
    for k in range(25):
        (tmp_path / f"bad_{k:02d}.mat").write_text(f"not MATLAB {k}\n" * 10)
    with pytest.raises(MatFileError, match=r"\(25 failed\).*; and 5 more$") as raised:
        import_mat_files(["."], tmp_path, tmp_path / "out", "all-bad")
    failures = raised.value.failures  # type: ignore[attr-defined]
    assert [f["path"] for f in failures] == [f"bad_{k:02d}.mat" for k in range(25)]


def test_a_header_only_file_says_it_holds_no_variables(tmp_path):
    path = v5_file(tmp_path / "sain_header.mat")
    with pytest.raises(MatFileError, match=r"holds no variables \(a header only\)"):
        read_mat(path)


def test_a_sparse_matrix_is_named_as_what_was_found(tmp_path):
    import scipy.sparse

    scipy.io.savemat(tmp_path / "sain_sparse.mat",
                     {"A": scipy.sparse.random(100, 100, density=0.1, random_state=0)})
    with pytest.raises(MatFileError, match=r"holds A \(sparse, 100x100\)"):
        read_mat(tmp_path / "sain_sparse.mat")


def test_metadata_booleans_come_back_as_booleans(tmp_path):
    config = GeneratorConfig(fault_types=("jeu",), records_per_class=1)
    record = generate_record(config, 0)
    read = read_mat(export_mat(record, tmp_path / "r.mat"))
    assert read.metadata["severity_ramp"] is record.metadata["severity_ramp"]
    assert read.metadata["noise"] == record.metadata["noise"]
    assert all(value is True for value in read.metadata["noise"].values())
