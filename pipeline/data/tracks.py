"""The `tracks` source: seeded CCD-like frames with particle tracks and a per-pixel class mask.

The lecture's segmentation case: radioactive decays from soil seen in a silicon CCD. Each frame is
a dark exposure (bias, Poisson dark current, Gaussian read noise, a few hot pixels) crossed by
tracks of three kinds, drawn with their typical shapes:

- muons (cosmic rays): long, straight, one pixel thin, medium intensity;
- alpha particles: short range, so a compact, very bright blob of charge a few pixels wide;
- beta electrons (tritium-like): faint, short, curly tracks (multiple scattering as a random walk).

Intensities are in ADU of the 8-bit frame (0..255). A pixel belongs to a track's class where that
track deposited at least `mask_threshold` ADU. Tracks are kept one background pixel apart, so that
each track is exactly one 8-connected component of its class and tracks can be counted.
Each frame depends only on (seed, index), so generation streams and is reproducible.

`render: clean` draws the tracks alone, as an ideal sensor would record them (no bias, dark
current, read noise or hot pixels): the other domain of the CycleGAN. Clean frames come from
random streams of their own, so a clean and a ccd dataset never hold the same tracks (unpaired).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage
from skimage.draw import line

from pipeline.params import TRACK_CLASSES

GENERATOR_VERSION = 1  # bump when drawing changes, so the source hash changes with it
CLASSES = TRACK_CLASSES
BACKGROUND, MUON, ALPHA, BETA = range(len(CLASSES))
KINDS = ("muons", "alphas", "betas")  # the params keys of the tracks-per-frame ranges, in class order
_PLACEMENT_TRIES = 60  # a track that finds no free room after this many draws is left out
_NEIGHBOURS = np.ones((3, 3), bool)  # 8-connectivity, as the evaluation counts objects
HOT_PIXEL_ADU = (120.0, 255.0)  # hot pixels are as bright as tracks, so brightness alone cannot tell


def plan(seed: int, index: int, ds) -> tuple[int, int, int]:
    """How many muons, alphas and betas frame `index` gets (cheap: no drawing)."""
    rng = np.random.default_rng([seed, index, _stream(ds)])
    return tuple(int(rng.integers(lo, hi + 1)) for lo, hi in (getattr(ds, k) for k in KINDS))


def _stream(ds) -> int:
    """First of the two random streams (plan, drawing) of a frame: 0 for ccd, 2 for clean frames."""
    return 2 if ds.render == "clean" else 0


def render(seed: int, index: int, ds) -> tuple[np.ndarray, np.ndarray]:
    """Frame `index` as (image uint8 (size, size), mask uint8 (size, size) of class ids)."""
    size = ds.image_size
    rng = np.random.default_rng([seed, index, _stream(ds) + 1])
    signal = np.zeros((size, size), np.float64)
    mask = np.zeros((size, size), np.uint8)
    blocked = np.zeros((size, size), bool)  # track pixels grown by one: no other track may touch them
    drawers = {MUON: _muon, ALPHA: _alpha, BETA: _beta}
    # Long muons first: they are the hardest to fit between the others.
    for cls, count in zip((MUON, ALPHA, BETA), plan(seed, index, ds), strict=True):
        for _ in range(count):
            for _ in range(_PLACEMENT_TRIES):
                deposit, pixels = drawers[cls](rng, size, ds)
                if pixels.any() and not (pixels & blocked).any():
                    signal += deposit
                    mask[pixels] = cls
                    blocked |= ndimage.binary_dilation(pixels, _NEIGHBOURS)
                    break
    image = _sensor(rng, signal, blocked, ds)
    return image, mask


def _sensor(rng: np.random.Generator, signal: np.ndarray, blocked: np.ndarray, ds) -> np.ndarray:
    """Signal plus bias, dark current, read noise and hot pixels, digitised to 8 bits (clean: signal only)."""
    if ds.render == "clean":
        return np.clip(np.rint(signal), 0, 255).astype(np.uint8)
    dark = rng.poisson(ds.dark_current, signal.shape) if ds.dark_current > 0 else 0.0
    frame = ds.bias + signal + dark + rng.normal(0.0, ds.read_noise, signal.shape)
    # Hot pixels are background: isolated bright pixels, kept off the tracks so labels stay exact.
    free = np.flatnonzero(~blocked)
    if ds.hot_pixels and len(free):
        hot = rng.choice(free, size=min(ds.hot_pixels, len(free)), replace=False)
        frame.flat[hot] = rng.uniform(*HOT_PIXEL_ADU, len(hot))
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def _fluctuate(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Per-pixel energy deposits: skewed like the Landau fluctuations of ionisation.

    Floored at half the mean, so every pixel of a thin track stays part of it and a track is
    never cut in two by one weak pixel.
    """
    return mean * np.maximum(rng.lognormal(-0.5 * 0.25**2, 0.25, n), 0.5)


def _muon(rng: np.random.Generator, size: int, ds) -> tuple[np.ndarray, np.ndarray]:
    """A straight chord through the frame, one pixel wide: (deposit, pixels)."""
    deposit = np.zeros((size, size))
    length = rng.uniform(0.5, 1.2) * size
    r, c = rng.uniform(0, size - 1, 2)
    angle = rng.uniform(0, np.pi)
    dr, dc = 0.5 * length * np.sin(angle), 0.5 * length * np.cos(angle)
    rr, cc = line(round(r - dr), round(c - dc), round(r + dr), round(c + dc))
    keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
    if keep.sum() < size // 4:
        return deposit, deposit > 0  # a corner clip too short to be a muon: drawn again
    level = ds.muon_intensity * rng.uniform(0.85, 1.15)  # the angle of incidence varies the path length
    deposit[rr[keep], cc[keep]] = _fluctuate(rng, int(keep.sum()), level)
    return deposit, deposit > 0


def _alpha(rng: np.random.Generator, size: int, ds) -> tuple[np.ndarray, np.ndarray]:
    """A compact, slightly elongated Gaussian cloud of charge; saturates the pixels at its centre.

    Its pixels are those that received at least `mask_threshold` ADU: the visible cloud.
    """
    sigma = rng.uniform(*ds.alpha_size)
    margin = 3 * sigma
    r0, c0 = rng.uniform(margin, size - 1 - margin, 2)
    stretch = rng.uniform(1.0, 1.6)
    theta = rng.uniform(0, np.pi)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    u = (rows - r0) * np.cos(theta) + (cols - c0) * np.sin(theta)
    v = -(rows - r0) * np.sin(theta) + (cols - c0) * np.cos(theta)
    peak = ds.alpha_intensity * rng.uniform(0.85, 1.15)
    deposit = peak * np.exp(-0.5 * ((u / (sigma * stretch)) ** 2 + (v / sigma) ** 2))
    pixels = deposit >= ds.mask_threshold
    deposit[~pixels] = 0.0  # the invisible tail is dropped, so background pixels carry no signal
    return deposit, pixels


def _beta(rng: np.random.Generator, size: int, ds) -> tuple[np.ndarray, np.ndarray]:
    """A random walk of unit steps whose direction wanders (multiple scattering), one pixel wide."""
    deposit = np.zeros((size, size))
    steps = int(rng.integers(ds.beta_length[0], ds.beta_length[1] + 1))
    r, c = rng.uniform(2, size - 3, 2)
    heading = rng.uniform(0, 2 * np.pi)
    points = [(round(r), round(c))]
    for _ in range(steps):
        heading += rng.normal(0.0, ds.beta_curl)
        r, c = r + np.sin(heading), c + np.cos(heading)
        points.append((round(r), round(c)))
    pts = np.asarray(points)
    if pts.min() < 0 or pts.max() >= size:
        return deposit, deposit > 0  # left the frame: it could be cut in two; drawn again
    path = np.zeros((size, size), bool)
    for (r0, c0), (r1, c1) in itertools.pairwise(points):
        rr, cc = line(r0, c0, r1, c1)
        path[rr, cc] = True
    level = ds.beta_intensity * rng.uniform(0.85, 1.15)
    deposit[path] = _fluctuate(rng, int(path.sum()), level)
    return deposit, path
