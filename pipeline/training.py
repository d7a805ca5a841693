"""Compile and fit a model from its params: optimizer, schedule, loss, batches and callbacks."""

from __future__ import annotations

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

from pipeline.params import TrainParams


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
