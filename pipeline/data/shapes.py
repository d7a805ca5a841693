"""The `shapes` source: seeded grayscale images with one drawn figure each.

Classes follow the lecture's "find images with an angle": every `angle` carries a '/' diagonal
stroke (the feature its hand-made 3x3 filter detects), and no other class has one. Lines are
horizontal, vertical or '\\'; crosses are '+'; rings are small circles; `noise` is background only.
Each image depends only on (seed, class, index), so generation streams and is reproducible.
Figures are placed at random (`placement="random"`, the lecture's translation task) or with their
bounding box centred (`"centered"`: the DCGAN's images, see params.yaml datasets.shapes_centered).
"""

from __future__ import annotations

import numpy as np
from skimage.draw import circle_perimeter, line

GENERATOR_VERSION = 2  # bump when drawing changes, so the source hash changes with it
LONGEST_OTHER_SLASH = 4  # '/' runs of every class but `angle` are cut to at most this many pixels

# Row/column steps of the stroke directions; rows grow downwards.
SLASH = (-1, 1)  # '/': up and to the right
BACKSLASH = (1, 1)  # '\'
HORIZONTAL = (0, 1)
VERTICAL = (1, 0)


def render(
    kind: str,
    rng: np.random.Generator,
    size: int = 32,
    noise: float = 0.05,
    min_intensity: float = 0.6,
    max_stroke: int = 2,
    placement: str = "random",
) -> np.ndarray:
    """One image of class `kind` as uint8 (size, size)."""
    return render_with_figure(kind, rng, size, noise, min_intensity, max_stroke, placement)[0]


def render_with_figure(
    kind: str,
    rng: np.random.Generator,
    size: int = 32,
    noise: float = 0.05,
    min_intensity: float = 0.6,
    max_stroke: int = 2,
    placement: str = "random",
) -> tuple[np.ndarray, np.ndarray]:
    """The image of `render` (the same draws, the same bytes) and its figure's pixels as a uint8 mask
    (1 on the figure, all 0 for `noise`): where a network that found the figure should look."""
    canvas = np.zeros((size, size), np.float32)
    intensity = rng.uniform(min_intensity, 1.0)
    width = int(rng.integers(1, max_stroke + 1))
    draw = _DRAWERS[kind]
    draw(canvas, rng, size, width, intensity, placement == "centered")
    if kind != "angle":
        # A ring's arc where its tangent is '/' (and any stroke thicker than 2) is a '/' run of 5+
        # pixels: the one feature that must tell angles apart. One-pixel nicks keep that true.
        pos = slash_runs(canvas > 0)
        canvas[(pos > 0) & (pos % (LONGEST_OTHER_SLASH + 1) == 0)] = 0.0
    background = rng.uniform(0.0, 0.15)
    img = np.maximum(canvas, background) + rng.normal(0.0, noise, canvas.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), (canvas > 0).astype(np.uint8)


def slash_runs(mask: np.ndarray) -> np.ndarray:
    """Each pixel's position (1, 2, ...) along its '/' run, counted from the run's lower-left end; 0 off it.

    Zeroing the pixels at positions k+1, 2(k+1), ... splits every run into pieces of at most k.
    """
    n_rows = mask.shape[0]
    pos = np.zeros(mask.shape, np.int32)
    pos[-1] = mask[-1]
    for r in range(n_rows - 2, -1, -1):
        pos[r, 0] = mask[r, 0]
        pos[r, 1:] = mask[r, 1:] * (pos[r + 1, :-1] + 1)
    return pos


def _stroke(
    canvas: np.ndarray, r0: int, c0: int, step: tuple[int, int], length: int, width: int, value: float
):
    """A straight stroke from (r0, c0) along `step`, `width` pixels thick."""
    r1, c1 = r0 + step[0] * (length - 1), c0 + step[1] * (length - 1)
    # Thicken across the stroke: along columns for steep strokes, along rows for flat ones.
    offset = (0, 1) if step[0] != 0 else (1, 0)
    n = canvas.shape[0]
    for k in range(width):
        rr, cc = line(r0 + offset[0] * k, c0 + offset[1] * k, r1 + offset[0] * k, c1 + offset[1] * k)
        keep = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n)
        canvas[rr[keep], cc[keep]] = value


def _length(rng: np.random.Generator, size: int) -> int:
    return int(rng.integers(max(5, size // 4), max(6, size // 2) + 1))


def _start(
    rng: np.random.Generator,
    size: int,
    extent_r: tuple[int, int],
    extent_c: tuple[int, int],
    width: int,
    centered: bool = False,
):
    """A start point such that rows r+extent_r and columns c+extent_c (plus the width) stay inside:
    drawn at random, or the one that centres the figure's bounding box (no random draw)."""
    lo_r, hi_r = -min(extent_r[0], 0), size - 1 - max(extent_r[1], 0) - width
    lo_c, hi_c = -min(extent_c[0], 0), size - 1 - max(extent_c[1], 0) - width
    if centered:
        r = (size - 1 - extent_r[0] - extent_r[1] - width) // 2
        c = (size - 1 - extent_c[0] - extent_c[1] - width) // 2
        return min(max(r, lo_r), max(lo_r, hi_r)), min(max(c, lo_c), max(lo_c, hi_c))
    return int(rng.integers(lo_r, max(lo_r, hi_r) + 1)), int(rng.integers(lo_c, max(lo_c, hi_c) + 1))


def _draw_angle(canvas, rng, size, width, value, centered):
    """A '/' arm plus a second arm (horizontal, vertical or '\\') meeting it at one end."""
    n = _length(rng, size)
    m = _length(rng, size)
    other = [HORIZONTAL, VERTICAL, BACKSLASH][int(rng.integers(3))]
    at_top = bool(rng.integers(2))  # the arms meet at the '/' stroke's top or bottom end
    sign = 1 if rng.integers(2) else -1
    step2 = (other[0] * sign, other[1] * sign)
    # Bounding box relative to the '/' stroke's bottom-left end (r, c).
    joint = (-(n - 1), n - 1) if at_top else (0, 0)
    end2 = (joint[0] + step2[0] * (m - 1), joint[1] + step2[1] * (m - 1))
    rows = (min(-(n - 1), end2[0]), max(0, end2[0]))
    cols = (min(0, end2[1]), max(n - 1, end2[1]))
    r, c = _start(rng, size, rows, cols, width, centered)
    _stroke(canvas, r, c, SLASH, n, width, value)
    _stroke(canvas, r + joint[0], c + joint[1], step2, m, width, value)


def _draw_line(canvas, rng, size, width, value, centered):
    step = [HORIZONTAL, VERTICAL, BACKSLASH][int(rng.integers(3))]
    n = _length(rng, size) + size // 8
    r, c = _start(rng, size, (0, step[0] * (n - 1)), (0, step[1] * (n - 1)), width, centered)
    _stroke(canvas, r, c, step, n, width, value)


def _draw_cross(canvas, rng, size, width, value, centered):
    half = _length(rng, size) // 2
    r, c = _start(rng, size, (-half, half), (-half, half), width, centered)
    _stroke(canvas, r, c - half, HORIZONTAL, 2 * half + 1, width, value)
    _stroke(canvas, r - half, c, VERTICAL, 2 * half + 1, width, value)


def _draw_ring(canvas, rng, size, width, value, centered):
    radius = int(rng.integers(3, max(4, size // 5) + 1))
    r, c = _start(rng, size, (-radius, radius), (-radius, radius), width, centered)
    for k in range(width):
        rr, cc = circle_perimeter(r, c, radius + k, shape=canvas.shape)
        canvas[rr, cc] = value


def _draw_noise(canvas, rng, size, width, value, centered):
    """Background only."""


_DRAWERS = {
    "angle": _draw_angle,
    "line": _draw_line,
    "cross": _draw_cross,
    "ring": _draw_ring,
    "noise": _draw_noise,
}
