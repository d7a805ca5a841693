"""The DCGAN task: build it from params, fixed latent samples, sample grids, and the samples
scored by FID and judged by a classifier."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

from pipeline import plots
from pipeline.models import dcgan as nets
from pipeline.models.gan import to_pixels
from pipeline.params import DcganParams

FIXED_SEED_OFFSET = 1_000  # the fixed latent sample's seed: params seed + this, apart from training's


def fixed_latent(n: int, latent_dim: int, seed: int) -> np.ndarray:
    """The same latent vectors at every epoch and in evaluate: the curve shows the generator change."""
    return np.random.default_rng(seed + FIXED_SEED_OFFSET).normal(size=(n, latent_dim)).astype("float32")


def generate(
    generator: keras.Model, z: np.ndarray, labels: np.ndarray | None, batch_size: int = 256
) -> np.ndarray:
    """uint8 images from latent vectors (and labels, for a conditional generator)."""
    out = []
    for i in range(0, len(z), batch_size):
        inputs = z[i : i + batch_size]
        if labels is not None:
            inputs = [inputs, np.asarray(labels[i : i + batch_size], "int32").reshape(-1, 1)]
        out.append(np.asarray(generator(inputs, training=False)))
    return to_pixels(np.concatenate(out))


def dcgan_grid_inputs(
    p: DcganParams, classes: list[str], seed: int
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Latents (and labels) of the grid: a row per class (conditional), or rows of samples."""
    rows = len(classes) if p.conditional else 4
    z = fixed_latent(rows * p.grid, p.latent_dim, seed + 1)
    labels = np.repeat(np.arange(rows), p.grid) if p.conditional else None
    titles = list(classes) if p.conditional else []
    return z, labels, titles


def dcgan_grid(generator, p: DcganParams, classes: list[str], seed: int, path: Path, title: str) -> None:
    z, labels, titles = dcgan_grid_inputs(p, classes, seed)
    images = generate(generator, z, labels)
    rows = [images[i * p.grid : (i + 1) * p.grid] for i in range(len(images) // p.grid)]
    plots.image_grid(rows, path, titles, title)


def dcgan_sample(generator, p: DcganParams, test_y: np.ndarray, seed: int) -> np.ndarray:
    """The fixed sample scored by FID: one image per test image, conditioned on its label."""
    z = fixed_latent(len(test_y), p.latent_dim, seed)
    return generate(generator, z, test_y if p.conditional else None)


# ---------------------------------------------------------------- CycleGAN



def build_dcgan(p: DcganParams, image_shape: tuple, num_classes: int, steps: int, seed: int) -> nets.DCGAN:
    def make_generator() -> keras.Model:
        return nets.dcgan_generator(
            image_shape, num_classes, p.latent_dim, p.generator_filters, p.conditional, p.upsampling
        )

    generator = make_generator()
    discriminator = nets.dcgan_discriminator(
        image_shape,
        num_classes,
        p.discriminator_filters,
        p.conditional,
        p.dropout,
        aux_classifier=p.aux_classifier_weight > 0,
    )
    ema = None
    if p.ema_decay:
        ema = make_generator()
    model = nets.DCGAN(
        generator,
        discriminator,
        p.latent_dim,
        p.conditional,
        p.label_smoothing,
        p.instance_noise,
        total_steps=steps * p.epochs,
        seed=seed,
        aux_weight=p.aux_classifier_weight,
        ema_generator=ema,
        ema_decay=p.ema_decay,
    )
    return model

