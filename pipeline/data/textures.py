"""The `textures` source: tiles of the texture photographs scikit-image ships, under varied lighting.

Each class is one 512x512 (cell: 660x550) grayscale photograph: brick, grass, gravel, the moon's
surface, cells under a microscope. The photo is cut into non-overlapping image_size x image_size
tiles, so no pixel lies in two images and a random split cannot put one region in both the
training and the test split. Each tile is turned by a multiple of 90 degrees, maybe mirrored, and
lit afresh (its contrast about its mean scaled, its brightness shifted): a material is to be told
by its texture, not by how bright its photo happened to be. Nothing is downloaded.
"""

from __future__ import annotations

import functools

import numpy as np

from pipeline.params.datasets import TEXTURE_PHOTOS

CLASSES = tuple(TEXTURE_PHOTOS)  # scikit-image's names: skimage.data.<name>()
GENERATOR_VERSION = 1  # raise when the same params and seed would give other tiles


@functools.cache
def photo(name: str) -> np.ndarray:
    """The class's photograph, uint8 grayscale (H, W), read once per process."""
    from skimage import data

    image = np.asarray(getattr(data, name)(), dtype=np.uint8)
    image.flags.writeable = False  # shared by every tile of the class
    return image


def tile_corners(shape: tuple[int, int], size: int) -> list[tuple[int, int]]:
    """Top-left corners of the non-overlapping size x size tiles of an image, row by row."""
    return [(r, c) for r in range(0, shape[0] - size + 1, size) for c in range(0, shape[1] - size + 1, size)]


def lit(tile: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float) -> np.ndarray:
    """The tile turned, maybe mirrored, its contrast scaled by 1 +- contrast about its mean and its
    brightness shifted by +- brightness grey levels (uniform draws), clipped to 0..255."""
    tile = np.rot90(tile, int(rng.integers(4)))
    if rng.random() < 0.5:
        tile = tile[:, ::-1]
    scale = rng.uniform(1.0 - contrast, 1.0 + contrast)
    shift = rng.uniform(-brightness, brightness)
    values = tile.astype(np.float64)
    mean = values.mean()
    return np.clip((values - mean) * scale + mean + shift + 0.5, 0, 255).astype(np.uint8)


def plan(classes: list[str], per_class: int, size: int, seed: int) -> list[tuple[int, tuple[int, int]]]:
    """(class index, tile corner) of every image: per_class tiles of each class, drawn without
    replacement (seeded); all of them where a photo has fewer."""
    out = []
    for label, name in enumerate(classes):
        corners = tile_corners(photo(name).shape, size)
        rng = np.random.default_rng([seed, CLASSES.index(name)])
        chosen = np.sort(rng.choice(len(corners), min(per_class, len(corners)), replace=False))
        out += [(label, corners[int(i)]) for i in chosen]
    return out


def render(name: str, corner: tuple[int, int], size: int, seed: int, brightness: float, contrast: float):
    """One image (size, size) of class `name`: its tile at `corner`, lit by its own seeded draw."""
    r, c = corner
    rng = np.random.default_rng([seed, CLASSES.index(name), r, c])
    return lit(photo(name)[r : r + size, c : c + size], rng, brightness, contrast)
