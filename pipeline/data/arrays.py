"""Prepared data on disk: uint8 `.npy` arrays read memory-mapped, written by streaming."""

from __future__ import annotations

import json
import os
import shutil
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
_HEADER_BYTES = 128  # fixed, so the final shape can be written over the reserved one


class NpyWriter:
    """Appends rows to a `.npy` file without holding them in memory.

    The header reserves room for `capacity` rows; `close()` rewrites it with the number written and
    truncates the file, so a source may skip rows it could not read.
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...], capacity: int, dtype: str = "uint8"):
        self.path, self.row_shape, self.dtype = Path(path), tuple(row_shape), np.dtype(dtype)
        self.count = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._write_header(capacity)

    def _write_header(self, rows: int) -> None:
        header = {"descr": self.dtype.str, "fortran_order": False, "shape": (rows, *self.row_shape)}
        text = repr(header).encode("latin1")
        pad = _HEADER_BYTES - 10 - len(text) - 1
        self._file.seek(0)
        self._file.write(
            b"\x93NUMPY\x01\x00" + struct.pack("<H", _HEADER_BYTES - 10) + text + b" " * pad + b"\n"
        )

    def append(self, row: np.ndarray) -> None:
        row = np.ascontiguousarray(row, dtype=self.dtype)
        if row.shape != self.row_shape:
            raise ValueError(f"row of shape {row.shape}, expected {self.row_shape}")
        self._file.write(row.tobytes())
        self.count += 1

    def close(self) -> None:
        self._file.truncate(_HEADER_BYTES + self.count * int(np.prod(self.row_shape)) * self.dtype.itemsize)
        self._write_header(self.count)
        self._file.close()

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_npy_shape(path: Path) -> tuple[int, ...]:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        # Header only, no data; the public readers (numpy 2 has no _read_array_header any more).
        read = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, _ = read(f)
    return tuple(shape)


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of one split, images memory-mapped."""
    folder = Path(folder)
    x = np.load(folder / f"{split}_x.npy", mmap_mode="r")
    y = np.load(folder / f"{split}_y.npy")
    return x, y


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    from pipeline.errors import UserError

    if not path.is_file():
        raise UserError(f"{path}: missing; run the stage that prepares this dataset first (dvc repro)")
    return json.loads(path.read_text())


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def atomic_dir(final: Path):
    """Yield a scratch folder that replaces `final` only if the block completes.

    A failed stage then leaves no output that looks complete: at most a `.partial` folder.
    """
    final = Path(final)
    scratch = final.with_name(final.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(scratch, final)
