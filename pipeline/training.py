"""Compile and fit a model from its params: optimizer, schedule, loss, batches and callbacks."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline.errors import UserError
from pipeline.params import Params, TrainParams


class ArrayBatches(keras.utils.PyDataset):
    """Batches from (memory-mapped) arrays, shuffled per epoch with a seeded order; y=None for predict.

    Only the rows of one batch are read at a time, so data larger than memory trains too. Batches
    are read in the training loop's own thread: a batch is one slice of a memory-mapped file, and
    two loader threads beside TensorFlow's cost more than they saved (cnn on 2 cores: 2,590 img/s
    with two threads, 2,920 without, as fast as in-memory arrays).
    """

    def __init__(
        self,
        x,
        y,
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_classes: int,
        sparse: bool = False,
    ):
        super().__init__()
        # sparse: labels as they are (segmentation masks, one-hot encoded inside the loss).
        self.x = x
        self.y = y if y is None or sparse else encode_labels(y, num_classes)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int):
        # Sorted indices make memory-mapped reads sequential; order within a batch does not matter.
        idx = np.sort(self.order[i * self.batch_size : (i + 1) * self.batch_size])
        if self.y is None:
            return np.asarray(self.x[idx])
        return np.asarray(self.x[idx]), np.asarray(self.y[idx])

    def on_epoch_end(self) -> None:
        self.start_at(self.epoch + 1)

    def start_at(self, epoch: int) -> None:
        """Continue with the order of `epoch`, so a resumed training sees the batches it would have."""
        self.epoch = epoch
        self.order = self._order()


def encode_labels(y: np.ndarray, num_classes: int) -> np.ndarray:
    """0/1 floats for a sigmoid output, one-hot rows for a softmax output."""
    y = np.asarray(y)
    if num_classes == 2:
        return y.astype("float32")[:, None]
    return np.eye(num_classes, dtype="float32")[y]


def compile_model(
    model: keras.Model,
    p: TrainParams,
    num_classes: int,
    steps_per_epoch: int,
    jit: bool,
    loss: keras.losses.Loss | None = None,
    metrics: list[keras.metrics.Metric] | None = None,
) -> None:
    """The optimizer and schedule from params; the classification loss and accuracy unless given."""
    lr = p.lr
    if p.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(p.lr, decay_steps=max(1, p.epochs * steps_per_epoch))
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": lambda **kw: keras.optimizers.SGD(momentum=0.9, **kw),
        "rmsprop": keras.optimizers.RMSprop,
    }
    kwargs = {"learning_rate": lr}
    if p.weight_decay:
        kwargs["weight_decay"] = p.weight_decay
    optimizer = optimizers[p.optimizer](**kwargs)
    if loss is None and num_classes == 2:
        loss = keras.losses.BinaryCrossentropy(label_smoothing=p.label_smoothing)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy")]
    elif loss is None:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=p.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit)


class Checkpoints:
    """A model's resumable progress: the last epoch's model and optimizer, the best weights, the state.

    Lives outside the stage's DVC outputs (DVC deletes those before a stage runs), so a training
    killed mid-way resumes at its last completed epoch on the next `dvc repro`. The fingerprint of
    the params and data it was made with guards against resuming a different training.
    """

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = Path(folder), fingerprint
        self.last = self.folder / "last.keras"
        self.best = self.folder / "best.weights.h5"
        self.state_file = self.folder / "state.json"

    def resumable(self) -> dict | None:
        """The saved state if it belongs to this very training, else None."""
        if not (self.state_file.is_file() and self.last.is_file()):
            return None
        state = json.loads(self.state_file.read_text())
        return state if state.get("fingerprint") == self.fingerprint else None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def save(self, model: keras.Model, state: dict, before_state: Callable[[], None] | None = None) -> None:
        """Write the model, then the state, each by rename: a kill at any moment leaves a usable pair.

        `before_state` runs in between: what must be stored before the state marks the epoch done.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "last.tmp.keras"
        model.save(tmp)
        os.replace(tmp, self.last)
        if before_state is not None:
            before_state()
        tmp_state = self.folder / "state.tmp.json"
        tmp_state.write_text(json.dumps({**state, "fingerprint": self.fingerprint}))
        os.replace(tmp_state, self.state_file)


class BestAndResume(keras.callbacks.Callback):
    """Keeps the best epoch's weights (by val_loss), stops early on patience, checkpoints every epoch.

    Replaces EarlyStopping(restore_best_weights=True) so that its state survives a resume too.
    `flush` (EpochLogger.wait) runs before an epoch's state is written: its metrics are then stored.
    """

    def __init__(
        self,
        checkpoints: Checkpoints,
        run_id: str,
        patience: int,
        state: dict | None = None,
        flush: Callable[[], None] | None = None,
    ):
        super().__init__()
        self.checkpoints, self.run_id, self.patience = checkpoints, run_id, patience
        self.flush = flush
        state = state or {}
        self.history: list[dict[str, float]] = state.get("history", [])
        self.best = state.get("best", math.inf)
        self.best_epoch = state.get("best_epoch", -1)
        self.wait = state.get("wait", 0)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append(logs)
        if logs["val_loss"] < self.best:
            self.best, self.best_epoch, self.wait = logs["val_loss"], epoch, 0
            self.checkpoints.folder.mkdir(parents=True, exist_ok=True)
            self.model.save_weights(self.checkpoints.best)
        else:
            self.wait += 1
        state = {"epoch": epoch, "run_id": self.run_id, "history": self.history}
        state.update(best=self.best, best_epoch=self.best_epoch, wait=self.wait)
        self.checkpoints.save(self.model, state, self.flush)
        if self.patience and self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None) -> None:
        if self.checkpoints.best.is_file():
            self.model.load_weights(self.checkpoints.best)

    def history_columns(self) -> dict[str, list[float]]:
        keys = sorted({k for row in self.history for k in row})
        return {k: [row.get(k, math.nan) for row in self.history] for k in keys}


def predict_outputs(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for every row of `x`, read batch by batch."""
    # predict() rather than predict_on_batch(): only the former splits batches across replicas.
    batches = ArrayBatches(x, None, batch_size, shuffle=False, seed=0, num_classes=0)
    return np.asarray(model.predict(batches, verbose=0))


def predict_proba(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (n, num_classes), also for a single-sigmoid binary model."""
    p = predict_outputs(model, x, batch_size).astype("float64")
    if p.shape[1] == 1:
        p = np.concatenate([1.0 - p, p], axis=1)
    return p


def _renumber_shared_objects(config: Any) -> Any:
    """Replace `shared_object_id`s (Python id()s, new every process) by 1, 2, ... in order of appearance.

    The ids only say which entries are one shared object; a consistent renumbering keeps that.
    """
    ids: dict[int, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: ids.setdefault(v, len(ids) + 1) if k == "shared_object_id" else walk(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(config)


def save_model(model: keras.Model, path: Path) -> None:
    """Save as .keras with no time in it (zip entry dates, metadata's saved date): same model, same bytes."""
    tmp = path.with_suffix(".tmp.keras")
    model.save(tmp)
    with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(src.namelist()):
            data = src.read(name)
            if name == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta, sort_keys=True).encode()
            elif name == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data))).encode()
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, data)
    tmp.unlink()


# ---------------------------------------------------------------- the train stage's work


def fingerprint(params: Params, name: str, manifest: dict, train_images: int) -> str:
    """What a resumed training must share with the one that saved the checkpoint."""
    p = params.model(name)
    parts = [p.model_dump(), params.seed, params.augment_for(p.dataset).model_dump(), manifest, train_images]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def build_model(p: TrainParams, manifest: dict, weights: Path | None) -> keras.Model:
    """The network of models.<name> for its dataset; ValueError where the hyperparameters do not fit."""
    from pipeline.models import build
    from pipeline.params import arch_kwargs

    classes = len(manifest["classes"])
    if p.architecture == "transfer":
        from pipeline.tasks import transfer

        return transfer.build(p, tuple(manifest["shape"]), classes, weights)
    return build(p.architecture, tuple(manifest["shape"]), classes, **arch_kwargs(p))


def train_model(
    params: Params,
    name: str,
    data: Path,
    train: Path,
    out: Path,
    reports: Path,
    checkpoints_dir: Path,
    weights: Path | None,
) -> str:
    """Fit models.<name>, resuming a killed training; save out/model.keras, history.csv and curves;
    log the run to MLflow. Returns the line that sums it up."""
    from pipeline import plots, tracking
    from pipeline.data.arrays import atomic_dir, load_split, read_manifest
    from pipeline.history import write_history
    from pipeline.runtime import distribution

    p = params.model(name)
    manifest = read_manifest(data)
    classes = manifest["classes"]
    segmentation = manifest.get("task") == "segmentation"
    x, y = load_split(train, "train")
    vx, vy = load_split(data, "val")
    if len(vx) == 0:
        raise UserError(f"datasets.{p.dataset}: the val split is empty; raise val_fraction or add images")
    n_classes = len(classes)
    train_data = ArrayBatches(x, y, p.batch_size, True, params.seed, n_classes, sparse=segmentation)
    val_data = ArrayBatches(
        vx, vy, max(p.batch_size, 256), False, params.seed, n_classes, sparse=segmentation
    )
    loss, metrics, extra = (None, None, {})
    if segmentation:
        from pipeline.tasks import segmentation as task

        loss, metrics, extra = task.objective(p, manifest)
    checkpoints = Checkpoints(checkpoints_dir, fingerprint(params, name, manifest, len(x)))
    state = checkpoints.resumable()
    with distribution(params.runtime):
        if state:
            print(f"train {name}: resuming after epoch {state['epoch'] + 1} from {checkpoints_dir}")
            model = keras.saving.load_model(checkpoints.last)
            train_data.start_at(state["epoch"] + 1)
        else:
            checkpoints.clear()
            try:
                model = build_model(p, manifest, weights)
            except ValueError as exc:  # hyperparameters that do not fit the data, e.g. too deep for the image
                raise UserError(f"models.{name}: {exc} (dataset '{p.dataset}')") from None
            compile_model(model, p, n_classes, len(train_data), params.runtime.jit_compile, loss, metrics)
    if params.runtime.verbose:
        model.summary()

    extra = {"train_images": str(len(x)), **extra}
    start = state["epoch"] + 1 if state else 0
    with (
        atomic_dir(out) as tmp,
        tracking.start_training_run(
            params, name, p, manifest, p.architecture, extra, state["run_id"] if state else None
        ) as run,
    ):
        logged = tracking.last_step(run.info.run_id, "loss") if state else -1
        epoch_logger = tracking.EpochLogger(logged_through=logged)
        # Waits for the epoch's metrics before marking it done: a resume then finds no gap in the run.
        best = BestAndResume(checkpoints, run.info.run_id, p.early_stopping, state, flush=epoch_logger.wait)
        if p.architecture == "transfer":  # feature extraction, then fine-tuning, in this one run
            from pipeline.tasks import transfer

            rt = params.runtime
            history = transfer.fit_two_phases(
                model,
                p,
                train_data,
                val_data,
                n_classes,
                epoch_logger,
                best,
                start=start,
                jit=rt.jit_compile,
                verbose=rt.verbose,
                scope=lambda: distribution(rt),
            )
        else:
            model.fit(
                train_data,
                validation_data=val_data,
                epochs=p.epochs,
                initial_epoch=start,
                # Log the epoch before checkpointing it: a kill in between then repeats no step.
                callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=epoch_logger.log), best],
                verbose=params.runtime.verbose,
            )
            history = best.history_columns()
        epoch_logger.wait()
        model_file = tmp / "model.keras"
        save_model(model, model_file)
        reports.mkdir(parents=True, exist_ok=True)
        write_history(history, reports / "history.csv")
        plots.training_curves(history, reports / "training_curves.png", f"{name} ({p.architecture})")
        tracking.set_tags(
            {tracking.MODEL_HASH_TAG: tracking.file_md5(model_file), "best_epoch": str(best.best_epoch + 1)}
        )
        tracking.log_artifacts(run.info.run_id, [reports / "training_curves.png", reports / "history.csv"])
        tracking.log_model(model)
    checkpoints.clear()
    shown = "val_mean_iou" if segmentation else "val_accuracy"
    return (
        f"train {name}: best epoch {best.best_epoch + 1}, {shown} "
        f"{history[shown][best.best_epoch]:.4f}; MLflow run {run.info.run_id}"
    )
