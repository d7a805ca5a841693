"""What both GAN families share: images scaled to -1..1 (tanh outputs) and back to uint8 pixels,
the discriminators' LeakyReLU slope, and the side check of stride-2 stacks."""

from __future__ import annotations

import numpy as np
from keras import ops

LEAK = 0.2  # LeakyReLU slope of the discriminators (DCGAN paper)


def to_model_range(images):
    """uint8-range pixels 0..255 -> -1..1."""
    return ops.cast(images, "float32") / 127.5 - 1.0


def to_pixels(images) -> np.ndarray:
    """-1..1 model outputs -> uint8 pixels, as the prepared data is stored."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- DCGAN


def start_side(image_shape, upsamplings: int, what: str) -> int:
    side = image_shape[0] // 2**upsamplings
    if image_shape[0] != image_shape[1] or side * 2**upsamplings != image_shape[0] or side < 1:
        raise ValueError(
            f"{what}: {upsamplings} stride-2 steps need square images whose side divides by "
            f"{2**upsamplings}, "
            f"got {image_shape[0]}x{image_shape[1]}"
        )
    return side
