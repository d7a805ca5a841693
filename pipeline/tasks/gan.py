"""What both GAN families share: the backend check, their data's checks, Adam with a decaying rate,
the per-epoch measures (FID, a sample grid logged to MLflow) that make up history.csv, the training
run (fit, checkpoints and resume, save, figures, MLflow) and the evaluation's bookkeeping.

A family (pipeline.tasks.dcgan, pipeline.tasks.cyclegan) builds its networks and measures into a
`GanSetup`; `train_gan` does the rest, the same for both."""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from pipeline.errors import UserError
from pipeline.params import Params
from pipeline.training import EpochBatches, fit


def adam(lr: float, beta_1: float, steps: int) -> keras.optimizers.Optimizer:
    """Adam whose learning rate decays to 0 over `steps` (cosine): at a constant rate the samples of
    consecutive epochs swung far apart (FID 9 -> 88 -> 11), so the last epoch's were a lottery."""
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps))
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=beta_1)


class EpochMeasures(keras.callbacks.Callback):
    """After each epoch: `measure()` adds its metrics to the epoch's logs (so the MLflow epoch logger
    after this callback logs them too), `grid(path)` draws the fixed-seed samples, which go to MLflow
    as the image `samples` at that step; every epoch's logs are kept for history.csv."""

    def __init__(
        self,
        measure: Callable[[], dict[str, float]],
        grid: Callable[[Path], None],
        run_id: str,
        history: list[dict[str, float]] | None = None,
        logged_through: int = -1,
    ):
        super().__init__()
        self.measure, self.grid, self.run_id = measure, grid, run_id
        self.history: list[dict[str, float]] = list(history or [])  # a resumed training's epochs so far
        self.logged_through = logged_through  # the last step the run holds: its image is there too

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        from pipeline import tracking

        logs = logs if logs is not None else {}
        logs.update(self.measure())
        self.history.append({k: float(v) for k, v in logs.items()})
        if epoch > self.logged_through:
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
    data: EpochBatches
    nets: dict[str, keras.Model]  # saved as <name>.keras; the first is the one whose hash finds the run
    measure: Callable[[], dict[str, float]]  # the per-epoch measures (FID, ...)
    grid: Callable[[Path], None]  # draws the sample grid into a PNG
    manifest: dict  # of the dataset it trains on
    architecture: str  # dcgan | cyclegan
    title: str
    extra: dict[str, str]  # run params beyond the entry's


def fingerprint(params: Params, name: str, setup: GanSetup) -> str:
    """What a resumed GAN training must share with the one that saved the checkpoint."""
    parts = [params.gan(name).model_dump(), params.seed, setup.manifest, setup.extra, len(setup.data)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _optimizers(model: keras.Model) -> dict[str, keras.optimizers.Optimizer]:
    return {"g": model.g_optimizer, "d": model.d_optimizer}


def write_checkpoint(model: keras.Model, path: Path) -> None:
    """Every variable of the GAN (its networks, EMA copy and random seed states) and both optimizers'
    (step counts, moments), with which of the GAN's variables each optimizer trains: one .npz."""
    variables = model.variables
    index = {id(v): i for i, v in enumerate(variables)}
    arrays = {f"v{i}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(variables)}
    for key, optimizer in _optimizers(model).items():
        arrays[f"{key}_trains"] = np.array([index[id(v)] for v in optimizer._trainable_variables], np.int64)
        for j, v in enumerate(optimizer.variables):
            arrays[f"{key}_{j}"] = keras.ops.convert_to_numpy(v.value)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def read_checkpoint(model: keras.Model, path: Path) -> None:
    """The state write_checkpoint saved, into a compiled GAN of the same params (before fit)."""
    variables = model.variables
    with np.load(path) as saved:
        if sum(k.startswith("v") for k in saved.files) != len(variables):
            raise ValueError(f"{path}: holds another network's variables")
        for i, v in enumerate(variables):
            v.assign(saved[f"v{i}"])
        for key, optimizer in _optimizers(model).items():
            if not optimizer.built:  # as its first step would build it: on the weights it trains
                optimizer.build([variables[i] for i in saved[f"{key}_trains"]])
            for j, v in enumerate(optimizer.variables):
                v.assign(saved[f"{key}_{j}"])


class GanCheckpoint(keras.callbacks.Callback):
    """After each epoch (measured and handed to MLflow by the callbacks before it): the GAN's state,
    then, once the epoch's metrics are stored (`flush`), the state that marks the epoch done."""

    def __init__(self, checkpoints, run_id: str, measures: EpochMeasures, flush: Callable[[], None]):
        super().__init__()
        self.checkpoints, self.run_id, self.measures, self.flush = checkpoints, run_id, measures, flush

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        state = {"epoch": epoch, "run_id": self.run_id, "history": self.measures.history}
        self.checkpoints.save_with(lambda path: write_checkpoint(self.model, path), ".npz", state, self.flush)


def train_gan(
    params: Params, name: str, setup: GanSetup, out: Path, reports: Path, checkpoints_dir: Path | None = None
) -> str:
    """Fit (resuming a killed training from `checkpoints_dir`, in the same MLflow run), save the
    networks, write history.csv, fid.png and samples.png, log the run to MLflow.

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
    checkpoints = state = None
    if checkpoints_dir is not None:
        checkpoints = training.Checkpoints(checkpoints_dir, fingerprint(params, name, setup))
        state = checkpoints.resumable()
        if state:
            print(f"train {name}: resuming after epoch {state['epoch'] + 1} from {checkpoints_dir}")
            read_checkpoint(model, checkpoints.last)
            setup.data.start_at(state["epoch"] + 1)
        else:
            checkpoints.clear()
    if params.runtime.verbose:
        for net in setup.nets.values():
            net.summary()
    resume = state["run_id"] if state else None
    start = state["epoch"] + 1 if state else 0
    with (
        atomic_dir(out) as tmp,
        tracking.start_training_run(
            params, name, p, setup.manifest, setup.architecture, setup.extra, resume
        ) as run,
    ):
        run_id = run.info.run_id
        # A resumed training may redo an epoch whose metrics reached the run just before the kill.
        logged = tracking.last_step(run_id, next(iter(state["history"][-1]))) if state else -1
        history = state["history"] if state else []
        measures = EpochMeasures(setup.measure, setup.grid, run_id, history, logged)
        epoch_logger = tracking.EpochLogger(logged_through=logged)
        # Measures first: they add FID to the logs that the epoch logger then sends to MLflow; the
        # checkpoint last, once the epoch is measured and its metrics stored.
        callbacks = [measures, keras.callbacks.LambdaCallback(on_epoch_end=epoch_logger.log)]
        if checkpoints is not None:
            callbacks.append(GanCheckpoint(checkpoints, run_id, measures, epoch_logger.wait))
        fit(
            model,
            setup.data,
            epochs=p.epochs,
            initial_epoch=start,
            callbacks=callbacks,
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
    if checkpoints is not None:
        checkpoints.clear()
    fids = {k: v for k, v in history.items() if k.startswith(fid.METRIC)}
    line = "; ".join(f"{k} {v[0]:.3f} -> {v[-1]:.3f}" for k, v in fids.items())
    return f"train {name}: {fid.NAME} first -> last epoch: {line}; MLflow run {run.info.run_id}"


def load_net(folder: Path, net: str, section: str, name: str) -> tuple[keras.Model, Path]:
    """A trained network of dcgans/cyclegans.<name> and its file."""
    path = folder / f"{net}.keras"
    if not path.is_file():
        raise UserError(f"{path}: missing; run the train stage of {section}.{name} first")
    return keras.saving.load_model(path), path


def log_evaluation(
    params: Params, name: str, model_file: Path, summary: dict, reports: Path, headline: tuple[str, ...]
) -> str:
    """metrics.json (the `headline` keys, which the metrics stage gathers) and details.json (the rest)
    written, every number logged (as test_<key>) into the GAN's training run."""
    from pipeline import tracking
    from pipeline.data.arrays import write_json

    reports.mkdir(parents=True, exist_ok=True)
    write_json(reports / "metrics.json", {k: v for k, v in summary.items() if k in headline})
    write_json(reports / "details.json", {k: v for k, v in summary.items() if k not in headline})
    flat = {(k if k.startswith("test_") else f"test_{k}"): v for k, v in summary.items()}
    files = [reports / "metrics.json", reports / "details.json"]
    return tracking.log_evaluation(params.tracking, name, model_file, flat, files)
