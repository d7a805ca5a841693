"""The `spectra` source: seeded 1D histograms, the lecture's "sequence of scalar measurements".

Each is a histogram of counts per bin, like an energy spectrum: a falling background plus one
feature, Poisson-sampled. The classes differ in where and how their peaks sit, never in where the
feature is as a whole, so a 1D convolution (which slides) is the natural tool:
  peak      one narrow peak
  doublet   two narrow peaks a few bins apart
  broad     one wide peak
  shoulder  a narrow peak sitting on the flank of a wide one
  edge      a plateau ending in a sharp drop (like a Compton edge)
Each spectrum depends only on (seed, class, index), so generation streams and is reproducible.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

GENERATOR_VERSION = 1  # bump when the spectra change, so the source hash changes with it


def _gauss(x: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - centre) / sigma) ** 2)


def _step(x: np.ndarray, at: float, width: float) -> np.ndarray:
    """0 left of `at`, 1 right of it, over about `width` bins."""
    return 0.5 * (1.0 + erf((x - at) / (width * np.sqrt(2.0))))


def render(kind: str, rng: np.random.Generator, length: int = 128, counts: int = 120) -> np.ndarray:
    """One spectrum of class `kind` as uint8 counts, shape (length,)."""
    x = np.arange(length, dtype=np.float64)
    height = counts * rng.uniform(0.5, 1.0)
    margin = max(12.0, 0.1 * length)
    centre = rng.uniform(margin, length - margin)
    if kind == "peak":
        feature = _gauss(x, centre, rng.uniform(1.0, 2.0))
    elif kind == "doublet":
        gap = rng.uniform(5.0, 9.0)
        ratio = rng.uniform(0.5, 1.0)
        feature = _gauss(x, centre - gap / 2, rng.uniform(1.0, 1.6)) + ratio * _gauss(
            x, centre + gap / 2, rng.uniform(1.0, 1.6)
        )
    elif kind == "broad":
        feature = _gauss(x, centre, rng.uniform(5.0, 9.0))
    elif kind == "shoulder":
        sigma = rng.uniform(5.0, 9.0)
        offset = rng.choice([-1.0, 1.0]) * rng.uniform(1.2, 2.0) * sigma
        if not 4.0 <= centre + offset <= length - 5.0:
            offset = -offset  # keep the narrow peak inside, or it would look like `broad`
        feature = 0.6 * _gauss(x, centre, sigma) + rng.uniform(0.6, 0.9) * _gauss(
            x, centre + offset, rng.uniform(1.0, 1.6)
        )
    elif kind == "edge":
        width = rng.uniform(0.15, 0.35) * length
        start = max(0.0, centre - width)
        feature = (
            0.5 * _step(x, start, 4.0) * (1.0 - _step(x, centre, 1.0)) * (1.0 + 0.5 * (x - start) / width)
        )
    else:
        raise ValueError(f"unknown spectrum class {kind!r}")
    background = rng.uniform(5.0, 0.25 * counts) * np.exp(-x / rng.uniform(0.3, 1.0) / length) + rng.uniform(
        1.0, 4.0
    )
    expected = background + height * feature / feature.max()
    return np.clip(rng.poisson(expected), 0, 255).astype(np.uint8)
