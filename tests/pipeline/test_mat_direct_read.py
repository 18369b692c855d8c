"""A MAT v5 signal stored uncompressed and real is read straight from the file; it must give
exactly what scipy gives, in either byte order, and a file changed after its plan is refused."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import scipy.io

from pipeline.datasets.matformat import list_variables
from pipeline.datasets.matread import plan_mat, read_mat, read_signal
from pipeline.datasets.matv5 import check_v5_variable
from pipeline.datasets.matvars import Budget
from pipeline.errors import MatFileError

FS = 20_480
RNG = np.random.default_rng(3)


def _expected(values: np.ndarray) -> np.ndarray:
    """What the import makes of an array: squeezed, samples along the longer axis, first channel."""
    array = np.squeeze(values)
    if array.ndim == 2:
        array = (array.T if array.shape[0] < array.shape[1] else array)[:, 0]
    return array.astype(np.float64).astype(np.float32)


def _walked(path, name):
    var = list_variables(path, "v5")[name].element
    return check_v5_variable(path, var, Budget(1 << 30, "test"))


@pytest.mark.parametrize("values", [
    RNG.standard_normal((4096, 1)), RNG.standard_normal((1, 4096)).astype(np.float32),
    (RNG.standard_normal(4096) * 1000).astype(np.int16), RNG.integers(0, 255, 4096).astype(np.uint8),
    RNG.standard_normal((4096, 3)), RNG.standard_normal((3, 4096)),
], ids=["double column", "single row", "int16", "uint8", "three columns", "three rows"])
@pytest.mark.parametrize("compressed", [False, True])
def test_a_signal_reads_as_scipy_reads_it(tmp_path, values, compressed):
    path = tmp_path / "s.mat"
    scipy.io.savemat(path, {"x": values, "label": "sain"}, do_compression=compressed)
    # Uncompressed, the walk finds the data to read straight; compressed, scipy inflates it.
    assert (_walked(path, "x").numeric_at is None) == compressed
    np.testing.assert_array_equal(read_mat(path).signal, _expected(scipy.io.loadmat(path)["x"]))
    np.testing.assert_array_equal(read_mat(path).signal, _expected(values))


def _big_endian_mat(path, name: str, values: np.ndarray) -> None:
    """A v5 file written big-endian (as MATLAB on a big-endian machine did): one double column."""
    def element(mdtype: int, data: bytes) -> bytes:
        return struct.pack(">II", mdtype, len(data)) + data + b"\0" * (-len(data) % 8)

    body = (element(6, struct.pack(">II", 6, 0))  # array flags: class double
            + element(5, struct.pack(">ii", len(values), 1))  # dimensions n x 1
            + element(1, name.encode())  # name
            + element(9, values.astype(">f8").tobytes()))  # real part, big-endian doubles
    header = b"MATLAB 5.0 MAT-file, big-endian test".ljust(116) + b"\0" * 8 + b"\x01\x00" + b"MI"
    path.write_bytes(header + struct.pack(">II", 14, len(body)) + body)


def test_a_big_endian_file_reads_as_scipy_reads_it(tmp_path):
    path = tmp_path / "be.mat"
    values = RNG.standard_normal(3000)
    _big_endian_mat(path, "x", values)
    assert _walked(path, "x").numeric_at is not None
    np.testing.assert_array_equal(scipy.io.loadmat(path)["x"][:, 0], values)
    np.testing.assert_array_equal(read_mat(path).signal, values.astype(np.float32))


def test_a_file_cut_short_after_its_plan_is_refused_on_read(tmp_path):
    path = tmp_path / "s.mat"
    scipy.io.savemat(path, {"x": RNG.standard_normal((8192, 1)), "label": "sain"})
    plan = plan_mat(path)
    assert plan.length == 8192
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with pytest.raises(MatFileError, match="s.mat"):
        read_signal(plan)
