"""The `folder` source: a user's images laid out as root/<class>/<image>."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import UserError

RESIZE_POLICIES = ("stretch", "pad", "crop")


class SkipImage(Exception):
    """A file that cannot be used as an image; the reason goes into the manifest."""


def scan(root: Path, classes: list[str] | None) -> tuple[list[str], list[tuple[int, Path]]]:
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
    items = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise UserError(f"{root / name}: class '{name}' has no files")
        items.extend((label, f) for f in files)
    return classes, items


def read_image(data: bytes, size: int, channels: int, resize: str) -> np.ndarray:
    """Decode any common format and mode into uint8 (size, size, channels)."""
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
