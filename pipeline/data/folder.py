"""The `folder` source: a user's images laid out as root/<class>/<image>."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import UserError

RESIZE_POLICIES = ("stretch", "pad", "crop")


class SkipImage(Exception):
    """A file that cannot be used as an image; the reason goes into the manifest."""


def scan(root: Path, classes: list[str] | None) -> tuple[list[str], FileList]:
    """Class names and (label, file) pairs, sorted, so the result does not depend on the file system."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: image folder not found (datasets.*.path)")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; expected root/<class>/<image> (datasets.*.path)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise UserError(f"{root}: no class folders; expected root/<class>/<image>")
    if classes is None:
        classes = found
    missing = [c for c in classes if c not in found]
    if missing:
        raise UserError(f"{root}: no folder for class(es) {missing}; found: {', '.join(found)}")
    if len(set(classes)) < 2 or len(set(classes)) != len(classes):
        # One class is nothing to classify (its model would be a constant); a repeat would count twice.
        raise UserError(
            f"{root}: classes {classes}: need at least two different classes (datasets.*.classes); "
            f"found: {', '.join(found)}"
        )
    labels: list[np.ndarray] = []
    names: list[bytes] = []
    for label, name in enumerate(classes):
        files = sorted(_walk_files(root / name, name), key=lambda rel: rel.split("/"))
        if not files:
            raise UserError(f"{root / name}: class '{name}' has no files")
        labels.append(np.full(len(files), label, np.int32))
        names.append(b"\0".join(os.fsencode(f) for f in files))
        del files
    return classes, FileList(root, np.concatenate(labels), b"\0".join(names))


def _walk_files(folder: Path, rel: str) -> Iterator[str]:
    """Relative names of the files under `folder`, hidden ones left out, streamed with os.scandir.

    Like Path.rglob, it lists symlinked files but does not descend into symlinked folders.
    """
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                yield from _walk_files(Path(entry.path), f"{rel}/{entry.name}")
            elif entry.is_file() and not entry.name.startswith("."):
                yield f"{rel}/{entry.name}"


class FileList(Sequence):
    """(label, path) pairs kept compactly: one bytes object of names and two arrays, not a Path per file.

    A folder of 40,000 images would otherwise hold 40,000 Path objects (about 0.5 KiB each) in memory.
    """

    def __init__(self, root: Path, labels: np.ndarray, names: bytes):
        self.root, self.labels, self._names = root, labels, names
        ends = np.flatnonzero(np.frombuffer(names, np.uint8) == 0)
        self._starts = np.concatenate([[0], ends + 1]).astype(np.int64)
        self._ends = np.concatenate([ends, [len(names)]]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def relative(self, k: int) -> str:
        """The k-th file's path relative to the root, with '/'."""
        return os.fsdecode(self._names[self._starts[k] : self._ends[k]])

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        return int(self.labels[k]), self.root / self.relative(k)


def read_image(data: bytes, size: int, channels: int, resize: str) -> np.ndarray:
    """Decode any common format and mode into uint8 (size, size, channels)."""
    if not data:
        raise SkipImage("empty file")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except UnidentifiedImageError:
        raise SkipImage("not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise SkipImage(f"corrupt image: {exc}") from None
    img = _to_8bit(img)
    img = img.convert("L" if channels == 1 else "RGB")
    img = _resize(img, size, resize)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if channels == 1 else arr


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and float images scaled into 0..255; palette and alpha images flattened onto black."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            top = 1.0  # float images are usually 0..1; 0..255 would turn them black
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img


def _resize(
    img: Image.Image,
    size: int,
    policy: str,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
    fill: int = 0,
) -> Image.Image:
    """Masks pass NEAREST (class ids must not be blended) and the background's index as `fill`."""
    if policy == "stretch":
        return img.resize((size, size), resample)
    if policy == "pad":
        return ImageOps.pad(img, (size, size), resample, color=fill)
    if policy == "crop":
        return ImageOps.fit(img, (size, size), resample)
    raise ValueError(f"resize policy {policy!r}; valid: {', '.join(RESIZE_POLICIES)}")
