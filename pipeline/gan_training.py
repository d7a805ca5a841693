"""Training and measuring the GANs: batches, fixed samples, per-epoch FID (EfficientNet-Lite0
features) and sample grids, and the final figures. Used by the gan_train and gan_evaluate stages."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from pipeline import fid, gans, plots
from pipeline.params import CycleganParams, DcganParams

FIXED_SEED_OFFSET = 1_000  # the fixed latent sample's seed: params seed + this, apart from training's


class UnpairedBatches(keras.utils.PyDataset):
    """(batch of a, batch of b), each drawn from its own seeded permutation per epoch: unpaired."""

    def __init__(self, a, b, batch_size: int, seed: int):
        super().__init__()  # read in the training loop's thread, as training.ArrayBatches
        self.a, self.b, self.batch_size, self.seed = a, b, batch_size, seed
        self.on_epoch_end_count = 0
        self._shuffle()

    def _shuffle(self) -> None:
        rng = np.random.default_rng([self.seed, self.on_epoch_end_count])
        self.order_a, self.order_b = rng.permutation(len(self.a)), rng.permutation(len(self.b))

    def __len__(self) -> int:
        return math.ceil(max(len(self.a), len(self.b)) / self.batch_size)

    def __getitem__(self, i: int):
        rows = np.arange(i * self.batch_size, (i + 1) * self.batch_size)
        # The shorter domain wraps around, so every batch has batch_size images of each domain.
        ia = np.sort(self.order_a[rows % len(self.a)])
        ib = np.sort(self.order_b[rows % len(self.b)])
        return np.asarray(self.a[ia]), np.asarray(self.b[ib])

    def on_epoch_end(self) -> None:
        self.on_epoch_end_count += 1
        self._shuffle()


def adam(lr: float, beta_1: float, steps: int) -> keras.optimizers.Optimizer:
    """Adam whose learning rate decays to 0 over `steps` (cosine): at a constant rate the samples of
    consecutive epochs swung far apart (FID 9 -> 88 -> 11), so the last epoch's were a lottery."""
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps))
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=beta_1)


# ---------------------------------------------------------------- DCGAN


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
    return gans.to_pixels(np.concatenate(out))


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


def translate(generator: keras.Model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    x = np.asarray(images)
    out = [
        np.asarray(generator(gans.to_model_range(x[i : i + batch_size]), training=False))
        for i in range(0, len(x), batch_size)
    ]
    return gans.to_pixels(np.concatenate(out))


def cycle_measures(g_ab, g_ba, a: np.ndarray, b: np.ndarray, score_a, score_b) -> dict[str, float]:
    """FID per direction (translations against the real images of the other domain) and the
    cycle reconstruction error per domain: mean |x - g(g(x))| in units of full intensity (0..1)."""
    fake_b, fake_a = translate(g_ab, a), translate(g_ba, b)
    rec_a, rec_b = translate(g_ba, fake_b), translate(g_ab, fake_a)
    err_a = float(np.mean(np.abs(rec_a.astype(np.float32) - a)) / 255.0)
    err_b = float(np.mean(np.abs(rec_b.astype(np.float32) - b)) / 255.0)
    return {
        f"{fid.METRIC}_ab": score_b(fake_b),
        f"{fid.METRIC}_ba": score_a(fake_a),
        "cycle_error_a": err_a,
        "cycle_error_b": err_b,
        "cycle_error": (err_a + err_b) / 2,
    }


def cycle_grid(
    g_ab, g_ba, a: np.ndarray, b: np.ndarray, names: tuple[str, str], path: Path, title: str
) -> None:
    fake_b, fake_a = translate(g_ab, a), translate(g_ba, b)
    rows = [a, fake_b, translate(g_ba, fake_b), b, fake_a, translate(g_ab, fake_a)]
    na, nb = names
    titles = [na, f"{na} -> {nb}", f"{na} -> {nb} -> {na}", nb, f"{nb} -> {na}", f"{nb} -> {na} -> {nb}"]
    plots.image_grid(rows, path, titles, title)


# ---------------------------------------------------------------- every epoch


class EpochMeasures(keras.callbacks.Callback):
    """After each epoch: `measure()` adds its metrics to the epoch's logs (so the MLflow epoch logger
    after this callback logs them too), `grid(path)` draws the fixed-seed samples, which go to MLflow
    as the image `samples` at that step; every epoch's logs are kept for history.csv."""

    def __init__(self, measure: Callable[[], dict[str, float]], grid: Callable[[Path], None], run_id: str):
        super().__init__()
        self.measure, self.grid, self.run_id = measure, grid, run_id
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        from pipeline import tracking

        logs = logs if logs is not None else {}
        logs.update(self.measure())
        self.history.append({k: float(v) for k, v in logs.items()})
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "samples.png"
            self.grid(png)
            tracking.log_epoch_image(self.run_id, png, "samples", epoch)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if k.startswith(("fid", "cycle_error")))
        print(f"epoch {epoch + 1}: {shown}", flush=True)

    def columns(self) -> dict[str, list[float]]:
        keys = sorted({k for row in self.history for k in row})
        return {k: [row.get(k, math.nan) for row in self.history] for k in keys}


def build_dcgan(p: DcganParams, image_shape: tuple, num_classes: int, steps: int, seed: int) -> gans.DCGAN:
    def make_generator() -> keras.Model:
        return gans.dcgan_generator(
            image_shape, num_classes, p.latent_dim, p.generator_filters, p.conditional, p.upsampling
        )

    generator = make_generator()
    discriminator = gans.dcgan_discriminator(
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
    model = gans.DCGAN(
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


def build_cyclegan(p: CycleganParams, image_shape: tuple) -> gans.CycleGAN:
    def g(name):
        return gans.cyclegan_generator(image_shape, p.filters, p.downsamplings, p.residual_blocks, name)

    def d(name):
        return gans.patchgan_discriminator(image_shape, p.discriminator_filters, p.discriminator_layers, name)

    return gans.CycleGAN(g("g_ab"), g("g_ba"), d("d_a"), d("d_b"), p.cycle_weight, p.identity_weight)
