"""The `motion` source: short seeded videos of a blob moving in one direction, the class.

The blob moves on a wrap-around screen (leaving on one side, it comes back on the other), starting
anywhere: so in every single frame it sits anywhere with the same chance, whatever its direction.
No frame alone tells the classes apart; only the change between frames does, which is what a 3D
convolution (across time as well as space) sees and a 2D one on one frame cannot.
Each video depends only on (seed, class, index), so generation streams and is reproducible.
"""

from __future__ import annotations

import numpy as np

GENERATOR_VERSION = 1  # bump when the videos change, so the source hash changes with it

# Row and column steps of each direction; rows grow downwards.
DIRECTIONS = {"left": (0.0, -1.0), "right": (0.0, 1.0), "up": (-1.0, 0.0), "down": (1.0, 0.0)}


def render(
    kind: str,
    rng: np.random.Generator,
    frames: int = 8,
    size: int = 16,
    speed: float = 1.5,
    noise: float = 0.1,
) -> np.ndarray:
    """One video of class `kind` as uint8 (frames, size, size)."""
    step = np.array(DIRECTIONS[kind]) * speed * rng.uniform(0.75, 1.25)
    start = rng.uniform(0.0, size, 2)
    sigma = rng.uniform(1.0, 2.0)
    intensity = rng.uniform(0.6, 1.0)
    grid = np.arange(size, dtype=np.float64)
    video = np.empty((frames, size, size))
    for t in range(frames):
        r, c = (start + t * step) % size
        # Distances on the wrap-around screen: the shorter way round.
        dr = (grid - r + size / 2) % size - size / 2
        dc = (grid - c + size / 2) % size - size / 2
        video[t] = intensity * np.exp(-(dr[:, None] ** 2 + dc[None, :] ** 2) / (2 * sigma**2))
    video += rng.uniform(0.0, 0.15) + rng.normal(0.0, noise, video.shape)
    return (np.clip(video, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
