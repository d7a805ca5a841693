"""On-disk arrays: the streaming .npy writer, memory-mapped reads, atomic output folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data.arrays import NpyWriter, atomic_dir, load_split, read_manifest, read_npy_shape, write_json
from pipeline.errors import UserError


def rows(n: int, shape=(4, 3, 1)) -> np.ndarray:
    return np.arange(n * int(np.prod(shape)), dtype=np.int64).reshape(n, *shape).astype(np.uint8)


def test_writer_with_skipped_rows_rewrites_the_header_and_truncates(tmp_path):
    path = tmp_path / "x.npy"
    data = rows(7)
    with NpyWriter(path, (4, 3, 1), capacity=10) as w:
        for row in data:
            w.append(row)
    assert w.count == 7
    assert read_npy_shape(path) == (7, 4, 3, 1)
    assert path.stat().st_size == 128 + 7 * 12  # fixed header, then exactly the rows written
    np.testing.assert_array_equal(np.load(path), data)


def test_writer_output_reads_back_memory_mapped(tmp_path):
    data = rows(5)
    with NpyWriter(tmp_path / "train_x.npy", (4, 3, 1), capacity=5) as w:
        for row in data:
            w.append(row)
    np.save(tmp_path / "train_y.npy", np.arange(5))
    x, y = load_split(tmp_path, "train")
    assert isinstance(x, np.memmap) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[[1, 3]], data[[1, 3]])
    np.testing.assert_array_equal(y, np.arange(5))


def test_writer_with_no_rows_and_other_dtypes(tmp_path):
    with NpyWriter(tmp_path / "empty.npy", (8, 8, 3), capacity=4):
        pass
    assert np.load(tmp_path / "empty.npy").shape == (0, 8, 8, 3)
    with NpyWriter(tmp_path / "f.npy", (2,), capacity=2, dtype="float32") as w:
        w.append(np.array([0.5, -1.0]))
    assert np.load(tmp_path / "f.npy").tolist() == [[0.5, -1.0]]


def test_header_of_a_huge_capacity_fits(tmp_path):
    # The header is written before the rows, so its fixed size must hold the largest shape.
    with NpyWriter(tmp_path / "big.npy", (1024, 1024, 3), capacity=10**9):
        pass
    assert read_npy_shape(tmp_path / "big.npy") == (0, 1024, 1024, 3)


def test_writer_refuses_a_row_of_another_shape(tmp_path):
    with NpyWriter(tmp_path / "x.npy", (4, 3, 1), capacity=2) as w, pytest.raises(ValueError, match="shape"):
        w.append(np.zeros((3, 4, 1)))


def test_atomic_dir_replaces_the_output_only_on_success(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (final / "a.txt").read_text() == "new"
    assert not (tmp_path / "out.partial").exists()

    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("half-written")
        raise RuntimeError("stage failed")
    assert (final / "a.txt").read_text() == "new"  # the last complete output, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "other") as tmp:
        (tmp / "x").write_text("x")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_clears_a_stale_scratch_folder(tmp_path):
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / "stale").write_text("left by a crash")
    with atomic_dir(tmp_path / "out") as tmp:
        assert list(tmp.iterdir()) == []
    assert list((tmp_path / "out").iterdir()) == []


def test_manifest_io(tmp_path):
    with pytest.raises(UserError, match=r"manifest\.json: missing; run the stage that prepares"):
        read_manifest(tmp_path)
    write_json(tmp_path / "manifest.json", {"b": 1, "a": [1, 2]})
    text = (tmp_path / "manifest.json").read_text()
    assert text.endswith("\n") and text.index('"a"') < text.index('"b"')  # stable bytes for DVC
    assert read_manifest(tmp_path) == json.loads(text)
