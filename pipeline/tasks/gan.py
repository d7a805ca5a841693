"""What both GAN families share: the backend check, their data's checks, Adam with a decaying rate,
the per-epoch measures (FID, a sample grid logged to MLflow) that make up history.csv, the training
run (fit, save, figures, MLflow) and the evaluation's bookkeeping.

A family (pipeline.tasks.dcgan, pipeline.tasks.cyclegan) builds its networks and measures into a
`GanSetup`; `train_gan` does the rest, the same for both."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from pipeline.errors import UserError
from pipeline.params import Params


def adam(lr: float, beta_1: float, steps: int) -> keras.optimizers.Optimizer:
    """Adam whose learning rate decays to 0 over `steps` (cosine): at a constant rate the samples of
    consecutive epochs swung far apart (FID 9 -> 88 -> 11), so the last epoch's were a lottery."""
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps))
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=beta_1)


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


def train_and_test(data: Path, dataset: str) -> tuple:
    """(train x, train y, test x, test y) of a prepared dataset, the test split in memory."""
    from pipeline.data.arrays import load_split

    x, y = load_split(data, "train")
    tx, ty = load_split(data, "test")
    tx, ty = np.asarray(tx), np.asarray(ty)
    for split, rows in (("train", x), ("test", tx)):
        if len(rows) < 2:
            raise UserError(f"datasets.{dataset}: the {split} split has {len(rows)} images; a GAN needs more")
    return x, y, tx, ty


@dataclass
class GanSetup:
    """A GAN ready to train: what `train_gan` needs from its family."""

    model: keras.Model  # overrides train_step; compiled by train_gan
    data: keras.utils.PyDataset
    nets: dict[str, keras.Model]  # saved as <name>.keras; the first is the one whose hash finds the run
    measure: Callable[[], dict[str, float]]  # the per-epoch measures (FID, ...)
    grid: Callable[[Path], None]  # draws the sample grid into a PNG
    manifest: dict  # of the dataset it trains on
    architecture: str  # dcgan | cyclegan
    title: str
    extra: dict[str, str]  # run params beyond the entry's


def train_gan(params: Params, name: str, setup: GanSetup, out: Path, reports: Path) -> str:
    """Fit, save the networks, write history.csv, fid.png and samples.png, log the run to MLflow.

    Returns the line that sums it up."""
    from pipeline import fid, plots, tracking, training
    from pipeline.data.arrays import atomic_dir
    from pipeline.history import write_history

    p, model = params.gan(name), setup.model
    steps = p.epochs * len(setup.data)
    model.compile(
        g_optimizer=adam(p.g_lr, p.beta_1, steps),
        d_optimizer=adam(p.d_lr, p.beta_1, steps),
        jit_compile=params.runtime.jit_compile,
    )
    if params.runtime.verbose:
        for net in setup.nets.values():
            net.summary()
    with (
        atomic_dir(out) as tmp,
        tracking.start_training_run(params, name, p, setup.manifest, setup.architecture, setup.extra) as run,
    ):
        measures = EpochMeasures(setup.measure, setup.grid, run.info.run_id)
        epoch_logger = tracking.EpochLogger()
        model.fit(
            setup.data,
            epochs=p.epochs,
            # Measures first: they add FID to the logs that the epoch logger then sends to MLflow.
            callbacks=[measures, keras.callbacks.LambdaCallback(on_epoch_end=epoch_logger.log)],
            verbose=params.runtime.verbose,
        )
        epoch_logger.wait()
        for net_name, net in setup.nets.items():
            training.save_model(net, tmp / f"{net_name}.keras")
        history = measures.columns()
        reports.mkdir(parents=True, exist_ok=True)
        write_history(history, reports / "history.csv")
        plots.gan_curves(history, reports / "fid.png", setup.title)
        setup.grid(reports / "samples.png")
        main_net = tmp / f"{next(iter(setup.nets))}.keras"
        tracking.set_tags({tracking.MODEL_HASH_TAG: tracking.file_md5(main_net)})
        tracking.log_artifacts(
            run.info.run_id, [reports / n for n in ("history.csv", "fid.png", "samples.png")]
        )
    fids = {k: v for k, v in history.items() if k.startswith(fid.METRIC)}
    line = "; ".join(f"{k} {v[0]:.3f} -> {v[-1]:.3f}" for k, v in fids.items())
    return f"train {name}: {fid.NAME} first -> last epoch: {line}; MLflow run {run.info.run_id}"


def load_net(folder: Path, net: str, section: str, name: str) -> tuple[keras.Model, Path]:
    """A trained network of dcgans/cyclegans.<name> and its file."""
    path = folder / f"{net}.keras"
    if not path.is_file():
        raise UserError(f"{path}: missing; run the train stage of {section}.{name} first")
    return keras.saving.load_model(path), path


def log_evaluation(params: Params, name: str, model_file: Path, summary: dict, reports: Path) -> str:
    """metrics.json written, its numbers logged (as test_<key>) into the GAN's training run."""
    from pipeline import tracking
    from pipeline.data.arrays import write_json

    reports.mkdir(parents=True, exist_ok=True)
    write_json(reports / "metrics.json", summary)
    flat = {f"test_{k}": v for k, v in summary.items()}
    return tracking.log_evaluation(params.tracking, name, model_file, flat, [reports / "metrics.json"])
