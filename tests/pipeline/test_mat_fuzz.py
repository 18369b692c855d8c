"""Fuzz of the MAT v5 reader: mutated valid files are read or refused, nothing else.

Each example writes a mutated copy of a small valid file (cut short, bytes flipped, a size
or type word forged, also inside the compressed stream of a variable) and reads it. The
reader must either read it or raise ``MatFileError``: never another exception, never a
hang (a deadline), never more memory than a small budget (tracemalloc's peak).
"""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.datasets import read_mat
from pipeline.domain import FS
from pipeline.errors import MatFileError
from tests.pipeline.test_matio import tone

PEAK_LIMIT = 24 << 20  # the bases are a few KiB: anything near this is an allocation bug
FUZZ = settings(max_examples=100, deadline=timedelta(seconds=2), derandomize=True,
                database=None, suppress_health_check=[HealthCheck.too_slow])
# Sizes a forger would try: zero, odd, the 16-bit small-element boundary, huge, sign bits.
FORGED = st.one_of(st.sampled_from([0, 1, 3, 4, 5, 7, 8, 9, 0x0004_0001, 0xFFFF, 0x10000,
                                    1 << 24, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF]),
                   st.integers(0, 0xFFFF_FFFF))


def _variables() -> dict:
    return {
        "x": tone(256, FS).reshape(-1, 1), "fs": float(FS), "label": "jeu",
        "flags": np.array([True, False]), "counts": np.arange(6, dtype=np.int16).reshape(2, 3),
        "notes": np.array(["abc", "def"]), "cells": np.array([1.5, "two", np.zeros(3)], dtype=object),
        "sparse": scipy.sparse.eye(4, format="csc"),
        # The struct is loaded whole, so everything in it meets scipy's reader.
        "metadata": {"load": 75.0, "ramp": True, "operator": "night", "inner": {"k": 3},
                     "list": np.array([1.0, 2.0]), "sparse": scipy.sparse.eye(3, format="csc"),
                     "cells": np.array(["a", 2.0], dtype=object), "z": np.array([1 + 2j])},
    }


def _base(compressed: bool) -> bytes:
    import io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, _variables(), do_compression=compressed, oned_as="column")
    return buffer.getvalue()


BASES = {"plain": _base(False), "compressed": _base(True)}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "mutant.mat"


def _attempt(target: Path, data: bytes) -> None:
    target.write_bytes(data)
    tracemalloc.start()
    try:
        with suppress(MatFileError):  # a clear refusal is a right answer; anything else fails
            read_mat(target)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"reading a {len(data)}-byte file peaked at {peak} bytes"


def _compressed_elements(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each top-level compressed element of a valid v5 file."""
    found, pos = [], 128
    while pos + 8 <= len(data):
        mdtype, nbytes = struct.unpack("<II", data[pos:pos + 8])
        if mdtype == 15:
            found.append((pos, nbytes))
        pos += 8 + nbytes
    return found


def test_bases_read_back_whole(target):
    for data in BASES.values():
        target.write_bytes(data)
        read = read_mat(target)
        assert (read.label, read.signal.size, read.metadata["ramp"]) == ("jeu", 256, True)
        assert len(data) < 16_384  # small, so mutations land in headers as often as in data


@FUZZ
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_cut_files_are_read_or_refused(target, base, data):
    raw = BASES[base]
    _attempt(target, raw[:data.draw(st.integers(0, len(raw) - 1))])


def _flipped(data: st.DataObject, raw: bytes, least: int, most: int) -> bytes:
    """``raw`` with ``least`` to ``most`` bytes xor-ed with a non-zero mask."""
    out = bytearray(raw)
    for position, mask in data.draw(st.lists(st.tuples(st.integers(0, len(out) - 1),
                                                       st.integers(1, 255)),
                                             min_size=least, max_size=most)):
        out[position] ^= mask
    return bytes(out)


def _forged(data: st.DataObject, raw: bytes, first_word: int, least: int, most: int) -> bytes:
    """``raw`` with ``least`` to ``most`` aligned 32-bit words (from ``first_word``) forged."""
    out = bytearray(raw)
    for index, value in data.draw(st.lists(st.tuples(st.integers(first_word, len(out) // 4 - 1),
                                                     FORGED), min_size=least, max_size=most)):
        out[4 * index:4 * index + 4] = struct.pack("<I", value)
    return bytes(out)


@FUZZ
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_files_with_flipped_bytes_are_read_or_refused(target, base, data):
    _attempt(target, _flipped(data, BASES[base], 1, 8))


@FUZZ
@given(base=st.sampled_from(sorted(BASES)), data=st.data())
def test_files_with_forged_words_are_read_or_refused(target, base, data):
    # Past the 128-byte header, which the flips cover: forged sizes and types of elements.
    _attempt(target, _forged(data, BASES[base], 32, 1, 3))


@FUZZ
@given(data=st.data())
def test_forgeries_inside_compressed_variables_are_read_or_refused(target, data):
    # Mutate what a compressed element inflates to, then compress it again, so the damage
    # reaches the structure behind the zlib layer instead of breaking its checksum.
    raw = BASES["compressed"]
    offset, length = data.draw(st.sampled_from(_compressed_elements(raw)))
    inner = zlib.decompress(raw[offset + 8:offset + 8 + length])
    inner = _flipped(data, _forged(data, inner, 0, 0, 3), 0, 3)
    packed = zlib.compress(inner[:data.draw(st.integers(0, len(inner)))])
    mutant = raw[:offset] + struct.pack("<II", 15, len(packed)) + packed + raw[offset + 8 + length:]
    _attempt(target, mutant)
