"""Compile and fit a model from its params: optimizer, schedule, loss, batches and callbacks."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import keras
import numpy as np

from pipeline.params import TrainParams


class ArrayBatches(keras.utils.PyDataset):
    """Batches from (memory-mapped) arrays, shuffled per epoch with a seeded order.

    Only the rows of one batch are read at a time, so data larger than memory trains too.
    """

    def __init__(
        self,
        x,
        y,
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_classes: int,
        workers: int = 1,
        sparse: bool = False,
    ):
        super().__init__(workers=workers, use_multiprocessing=False)
        # sparse: labels as they are (segmentation masks, one-hot encoded inside the loss).
        self.x, self.y = x, (y if sparse else encode_labels(y, num_classes))
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
        return np.asarray(self.x[idx]), np.asarray(self.y[idx])

    def on_epoch_end(self) -> None:
        self.epoch += 1
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


def callbacks(p: TrainParams) -> list[keras.callbacks.Callback]:
    """Keep the weights of the best validation epoch; stop early when patience is set."""
    patience = p.early_stopping if p.early_stopping else p.epochs + 1
    return [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", mode="min", patience=patience, restore_best_weights=True, verbose=0
        )
    ]


def predict_proba(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (n, num_classes), also for a single-sigmoid binary model."""
    out = [model.predict_on_batch(np.asarray(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    p = np.concatenate([np.asarray(o) for o in out]).astype("float64")
    if p.shape[1] == 1:
        p = np.concatenate([1.0 - p, p], axis=1)
    return p


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
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, data)
    tmp.unlink()
