"""The `seg_folder` source: a user's images with per-pixel class masks.

Layout: root/images/<stem>.<ext> and root/masks/<stem>.png, paired by their path below images/ and
masks/ without the extension. A mask holds one class id per pixel: a single-channel image whose
values are the ids, or a palette PNG whose palette indices are the ids; params map class names to
ids. Every pairing, size and value problem is found before anything is written, and reported
with the first few files and a count.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.data import folder
from pipeline.errors import UserError

MASK_MODES = ("L", "P", "1", "I", "I;16", "I;16B", "I;16L")  # single-channel ids or palette indices
SHOWN = 5  # files named in an error message; the rest are counted


def listing(files: list[str]) -> str:
    """'a.png, b.png, c.png and 4 more' for an error message."""
    shown = ", ".join(files[:SHOWN])
    return f"{shown} and {len(files) - SHOWN} more" if len(files) > SHOWN else shown


def _files_by_stem(folder_path: Path, where: str) -> dict[str, Path]:
    if not folder_path.is_dir():
        raise UserError(f"{folder_path}: folder not found; {where} expects root/images/ and root/masks/")
    found: dict[str, list[Path]] = {}
    for p in sorted(folder_path.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder_path).parts):
            found.setdefault(p.relative_to(folder_path).with_suffix("").as_posix(), []).append(p)
    twice = [f"{stem}.*" for stem, paths in found.items() if len(paths) > 1]
    if twice:
        raise UserError(
            f"{folder_path}: {len(twice)} stem(s) name more than one file, so the pairing is ambiguous: "
            f"{listing(twice)}"
        )
    return {stem: paths[0] for stem, paths in found.items()}


def scan(root: Path, where: str) -> list[tuple[str, Path, Path]]:
    """(stem, image file, mask file) for every pair, sorted by stem; unpaired files are an error."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: segmentation folder not found ({where}.path)")
    images = _files_by_stem(root / "images", where)
    masks = _files_by_stem(root / "masks", where)
    lonely = sorted(images[s].relative_to(root).as_posix() for s in images.keys() - masks.keys())
    if lonely:
        raise UserError(
            f"{where}: {len(lonely)} image(s) without a mask (expected masks/<same stem>.png): "
            f"{listing(lonely)}"
        )
    orphans = sorted(masks[s].relative_to(root).as_posix() for s in masks.keys() - images.keys())
    if orphans:
        raise UserError(
            f"{where}: {len(orphans)} mask(s) without an image (expected images/<same stem>.*): "
            f"{listing(orphans)}"
        )
    if not images:
        raise UserError(f"{root}: no images in {root / 'images'}")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def mask_ids(img: Image.Image) -> np.ndarray:
    """The class ids of a mask image, as an integer array (palette images give their indices)."""
    if img.mode not in MASK_MODES:
        raise ValueError(f"mode {img.mode}")
    return np.asarray(img).astype(np.int64)


def check(pairs: list[tuple[str, Path, Path]], root: Path, ids: Mapping[str, int], where: str) -> None:
    """Every mask single-channel, the size of its image, and holding only declared class ids."""
    declared = set(ids.values())
    bad_mode, bad_size, bad_value = [], [], []
    stray: set[int] = set()
    for _, image_path, mask_path in pairs:
        name = mask_path.relative_to(root).as_posix()
        try:
            with Image.open(image_path) as img:
                image_size = img.size  # header only
            with Image.open(mask_path) as m:
                if m.mode not in MASK_MODES:
                    bad_mode.append(f"{name} ({m.mode})")
                    continue
                values = mask_ids(m)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            continue  # unreadable files are skipped by prepare and listed in the manifest
        if values.shape[::-1] != image_size:
            mask_size = f"{values.shape[1]}x{values.shape[0]}"
            bad_size.append(f"{name} ({mask_size} vs image {image_size[0]}x{image_size[1]})")
            continue
        found = set(np.unique(values).tolist()) - declared
        if found:
            stray |= found
            bad_value.append(f"{name} ({', '.join(map(str, sorted(found)))})")
    if bad_mode:
        raise UserError(
            f"{where}: {len(bad_mode)} mask(s) are not single-channel class ids or palette PNGs "
            f"(valid modes: {', '.join(MASK_MODES)}): {listing(bad_mode)}"
        )
    if bad_size:
        raise UserError(
            f"{where}: {len(bad_size)} mask(s) differ in size from their image: {listing(bad_size)}"
        )
    if bad_value:
        valid = ", ".join(f"{v} ({k})" for k, v in ids.items())
        raise UserError(
            f"{where}.classes: {len(bad_value)} mask(s) hold value(s) {sorted(stray)} that are not declared "
            f"classes (declared: {valid}): {listing(bad_value)}"
        )


def read_mask(data: bytes, index_of: np.ndarray, size: int, resize: str, fill: int) -> np.ndarray:
    """Decode a mask into class indices (size, size) uint8; resized by nearest neighbour only.

    `index_of` maps a mask id (0..255) to its class index; `fill` is the index of padded pixels.
    """
    if not data:
        raise folder.SkipImage("empty mask file")
    try:
        img = Image.open(io.BytesIO(data))
        ids = mask_ids(img)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise folder.SkipImage(f"unreadable mask: {exc}") from None
    indices = Image.fromarray(index_of[ids].astype(np.uint8), "L")
    resized = folder._resize(indices, size, resize, Image.Resampling.NEAREST, fill)
    return np.asarray(resized, dtype=np.uint8)
