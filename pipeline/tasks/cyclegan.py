"""The CycleGAN task: unpaired batches, translations, the per-epoch measures (FID per direction,
cycle error) and the grid of translations."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

from pipeline import fid, plots
from pipeline.errors import UserError
from pipeline.models import cyclegan as nets
from pipeline.models.gan import to_model_range, to_pixels
from pipeline.params import CycleganParams, Params
from pipeline.tasks.gan import GanSetup, train_and_test
from pipeline.training import EpochBatches

# metrics.json's keys (gathered by the metrics stage, a `dvc exp show` column each); the rest go to
# details.json.
HEADLINE = ("fid_lite0_ab", "fid_lite0_ba", "cycle_error", "test_images")


class UnpairedBatches(EpochBatches):
    """(batch of a, batch of b), each drawn from its own seeded permutation per epoch: unpaired."""

    def __init__(self, a, b, batch_size: int, seed: int):
        super().__init__()
        self.a, self.b, self.batch_size, self.seed = a, b, batch_size, seed
        self.reorder()

    def reorder(self) -> None:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.order_a, self.order_b = rng.permutation(len(self.a)), rng.permutation(len(self.b))

    def __len__(self) -> int:
        return math.ceil(max(len(self.a), len(self.b)) / self.batch_size)

    def __getitem__(self, i: int):
        rows = np.arange(i * self.batch_size, (i + 1) * self.batch_size)
        # The shorter domain wraps around, so every batch has batch_size images of each domain.
        ia = np.sort(self.order_a[rows % len(self.a)])
        ib = np.sort(self.order_b[rows % len(self.b)])
        return np.asarray(self.a[ia]), np.asarray(self.b[ib])


def translate(generator: keras.Model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    x = np.asarray(images)
    out = [
        np.asarray(generator(to_model_range(x[i : i + batch_size]), training=False))
        for i in range(0, len(x), batch_size)
    ]
    return to_pixels(np.concatenate(out))


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


def build_cyclegan(p: CycleganParams, image_shape: tuple) -> nets.CycleGAN:
    def g(name):
        return nets.cyclegan_generator(image_shape, p.filters, p.downsamplings, p.residual_blocks, name)

    def d(name):
        return nets.patchgan_discriminator(image_shape, p.discriminator_filters, p.discriminator_layers, name)

    return nets.CycleGAN(g("g_ab"), g("g_ba"), d("d_a"), d("d_b"), p.cycle_weight, p.identity_weight)


# ---------------------------------------------------------------- the cyclegan stages


def test_pair(data: Path, target: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both domains' test images, cut to the same number: equal sizes on both sides of every FID."""
    from pipeline.data.arrays import load_split

    tx = np.asarray(load_split(data, "test")[0])
    btx = np.asarray(load_split(target, "test")[0])
    n = min(len(tx), len(btx))
    return tx[:n], btx[:n]


def setup_training(params: Params, name: str, data: Path, target: Path, weights: Path) -> GanSetup:
    """cyclegans.<name> built for its two prepared datasets, with its per-epoch measures and grid."""
    from pipeline.data.arrays import load_split, read_manifest

    p = params.gan(name)
    manifest = read_manifest(data)
    x, _, tx, _ = train_and_test(data, p.dataset)
    shape = tuple(manifest["shape"])
    title = f"{name} (cyclegan on {p.dataset} -> {p.target})"
    other = read_manifest(target)
    if tuple(other["shape"]) != shape:
        raise UserError(
            f"cyclegans.{name}.target: dataset '{p.target}' has images of shape {other['shape']}, "
            f"dataset '{p.dataset}' {manifest['shape']}; a CycleGAN needs both the same"
        )
    bx, _ = load_split(target, "train")
    tx, btx = test_pair(data, target)
    scorer, scorer_b = fid.FidScorer(tx, weights), fid.FidScorer(btx, weights)
    batches = UnpairedBatches(x, bx, p.batch_size, params.seed)
    try:
        model = build_cyclegan(p, shape)
    except ValueError as exc:  # hyperparameters that do not fit the images, e.g. too many stride-2 steps
        raise UserError(f"cyclegans.{name}: {exc} (dataset '{p.dataset}')") from None
    shown = slice(0, p.grid)

    def measure() -> dict[str, float]:
        return cycle_measures(model.g_ab, model.g_ba, tx, btx, scorer, scorer_b)

    def grid(path: Path) -> None:
        cycle_grid(model.g_ab, model.g_ba, tx[shown], btx[shown], (p.dataset, p.target), path, title)

    extra = {
        "train_images": str(len(x)),
        "fid_images": str(len(tx)),
        "fid": f"{fid.NAME}, input {fid.INPUT_SIZE}px",
    }
    nets = {"g_ab": model.g_ab, "g_ba": model.g_ba, "d_a": model.d_a, "d_b": model.d_b}
    return GanSetup(model, batches, nets, measure, grid, manifest, "cyclegan", title, extra)


def evaluate(
    params: Params, name: str, g_ab, g_ba, data: Path, target: Path, history: dict, weights: Path
) -> tuple[dict, str]:
    """FID per direction against doing nothing, and the cycle error: (metrics.json, line)."""
    p = params.gan(name)
    tx, btx = test_pair(data, target)
    score_a, score_b = fid.FidScorer(tx, weights), fid.FidScorer(btx, weights)
    measured = cycle_measures(g_ab, g_ba, tx, btx, score_a, score_b)
    # What doing nothing scores: each domain's real test images against the other's. A translation
    # worth its name gets below this.
    summary: dict = {
        "fid": fid.NAME,
        "test_images": len(tx),
        f"{fid.METRIC}_untranslated_ab": score_b(tx),
        f"{fid.METRIC}_untranslated_ba": score_a(btx),
    }
    for key, value in measured.items():
        summary[key] = value
        summary[f"{key}_first_epoch"] = history[key][0]
        summary[f"{key}_ratio"] = value / history[key][0] if history[key][0] else None
    m = fid.METRIC
    ab, ba = (
        f"{summary[f'{m}_{d}']:.3f} (first epoch {summary[f'{m}_{d}_first_epoch']:.3f})" for d in ("ab", "ba")
    )
    line = (
        f"{m} {p.dataset}->{p.target} {ab}, {p.target}->{p.dataset} {ba}; cycle error "
        f"{summary['cycle_error']:.4f} (first epoch {summary['cycle_error_first_epoch']:.4f})"
    )
    return summary, line
