"""The DCGAN task: build it from params, fixed latent samples, sample grids, and the samples
scored by FID and judged by a classifier."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from pipeline import plots
from pipeline.errors import UserError
from pipeline.models import dcgan as nets
from pipeline.models.gan import to_pixels
from pipeline.params import DcganParams, Params
from pipeline.tasks.gan import GanSetup, train_and_test

# metrics.json's keys (gathered by the metrics stage, a `dvc exp show` column each); the rest go to
# details.json.
HEADLINE = ("fid_lite0", "fid_lite0_ratio", "label_accuracy", "diversity", "test_images")

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


# ---------------------------------------------------------------- the dcgan stages


def setup_training(params: Params, name: str, data: Path, weights: Path) -> GanSetup:
    """dcgans.<name> built for its prepared dataset, with its per-epoch FID and sample grid."""
    from pipeline import fid, training
    from pipeline.data.arrays import read_manifest

    p = params.gan(name)
    manifest = read_manifest(data)
    x, y, tx, ty = train_and_test(data, p.dataset)
    title = f"{name} (dcgan on {p.dataset})"
    classes = manifest["classes"]
    batches = training.ArrayBatches(x, y, p.batch_size, True, params.seed, len(classes), sparse=True)
    try:
        model = build_dcgan(p, tuple(manifest["shape"]), len(classes), len(batches), params.seed)
    except ValueError as exc:  # hyperparameters that do not fit the images, e.g. too many stride-2 steps
        raise UserError(f"dcgans.{name}: {exc} (dataset '{p.dataset}')") from None
    scorer = fid.FidScorer(tx, weights)

    # The sampler (the EMA generator if dcgans.<name>.ema_decay is set) is what is measured, shown
    # and saved as generator.keras, from the first epoch on.
    def measure() -> dict[str, float]:
        return {fid.METRIC: scorer(dcgan_sample(model.sampler, p, ty, params.seed))}

    def grid(path: Path) -> None:
        dcgan_grid(model.sampler, p, classes, params.seed, path, title)

    extra = {
        "train_images": str(len(x)),
        "fid_images": str(len(tx)),
        "fid": f"{fid.NAME}, input {fid.INPUT_SIZE}px",
    }
    nets = {"generator": model.sampler, "discriminator": model.discriminator}
    return GanSetup(model, batches, nets, measure, grid, manifest, "dcgan", title, extra)


def spread(features: np.ndarray) -> float:
    """Mean Euclidean distance between two different rows: how varied a set is in feature space."""
    from scipy.spatial.distance import pdist

    return float(pdist(np.asarray(features, np.float64)).mean()) if len(features) > 1 else float("nan")


def diversity(sample_features: np.ndarray, real_features: np.ndarray, groups) -> dict:
    """Per group (class): the samples' spread over the real images' spread. 1 is as varied as the real
    images; a generator that draws one figure per class scores near 0, which the label accuracy
    cannot show."""
    out = {}
    for group, mask in groups:
        real = spread(real_features[mask]) if mask.sum() > 1 else 0.0
        out[group] = spread(sample_features[mask]) / real if real > 0 else None  # None: nothing to compare
    return out


def evaluate(
    params: Params, name: str, generator, classifier, data: Path, history: dict, weights: Path
) -> tuple[dict, str]:
    """FID of the samples, the classifier's verdict on them, their diversity: (metrics.json, line)."""
    from pipeline import fid, training
    from pipeline.data.arrays import load_split, read_manifest

    p = params.gan(name)
    tx, ty = load_split(data, "test")
    tx, ty = np.asarray(tx), np.asarray(ty)
    classes = read_manifest(data)["classes"]
    # predict_proba's columns are the classes the classifier tells apart (one sigmoid unit: two).
    real_proba = training.predict_proba(classifier, tx)
    predicts = real_proba.shape[1]
    if predicts != len(classes):
        raise UserError(
            f"dcgans.{name}.classifier: models.{p.classifier} predicts {predicts} classes, "
            f"dataset '{p.dataset}' has {len(classes)} ({', '.join(classes)}); "
            "retrain it on a dataset with these classes"
        )
    samples = dcgan_sample(generator, p, ty, params.seed)
    scorer = fid.FidScorer(tx, weights)
    sample_features = scorer.features(samples)
    value = fid.features_distance(sample_features, scorer.reference)
    vx = np.asarray(load_split(data, "val")[0])[: len(tx)]
    predicted = training.predict_proba(classifier, samples).argmax(axis=1)
    real = real_proba.argmax(axis=1)
    first = history[fid.METRIC][0]
    summary = {
        "fid": fid.NAME,
        fid.METRIC: value,
        f"{fid.METRIC}_first_epoch": first,
        f"{fid.METRIC}_ratio": value / first if first else None,
        # Real validation images against the real test images: the floor a perfect generator reaches
        # (only with as many images as the test split; fewer score higher).
        f"{fid.METRIC}_real_val": scorer(vx) if len(vx) == len(tx) else None,
        "classifier": p.classifier,
        # Of the real test images, the share the classifier gets right: the ceiling of the next one.
        "classifier_test_accuracy": float(np.mean(real == ty)),
        "samples_shown_per_class": {c: float(np.mean(predicted == i)) for i, c in enumerate(classes)},
        "test_images": len(tx),
    }
    groups = (
        [(c, ty == i) for i, c in enumerate(classes)] if p.conditional else [("all", np.ones(len(ty), bool))]
    )
    per_group = diversity(sample_features, scorer.reference, groups)
    known = [v for v in per_group.values() if v is not None]
    # The least varied class: a mean let over-dispersed noise images hide a collapsed class.
    summary["diversity"] = float(min(known)) if known else None
    if p.conditional:
        summary["per_class_diversity"] = per_group
        summary["label_accuracy"] = float(np.mean(predicted == ty))
        summary["per_class_label_accuracy"] = {
            c: float(np.mean(predicted[ty == i] == i)) if np.any(ty == i) else None
            for i, c in enumerate(classes)
        }
    line = f"{fid.METRIC} {value:.3f} (first epoch {first:.3f})"
    if summary["diversity"] is not None:
        line += f"; diversity {summary['diversity']:.2f} of the real images' (least varied class)"
    if p.conditional:
        line += f"; {summary['label_accuracy']:.3f} of samples classified as their label"
    return summary, line
