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


class EpochBatches(keras.utils.PyDataset):
    """A PyDataset whose batches depend on the epoch only (seeded per epoch), never on how many epochs
    this object has seen: a resumed training draws exactly the batches it would have drawn.

    Keras calls on_epoch_end also when it resets an iterator, at the start of every fit (after
    reading two batches for their shapes), so the epoch is counted at on_epoch_begin: the first
    epoch a fit begins is `start_at`'s (0 for a new object), the next fit's continues the count.
    """

    def __init__(self):
        super().__init__()  # batches are read in the training loop's thread (see ArrayBatches)
        self.epoch = self._next = 0

    def reorder(self) -> None:
        """Draw the order of self.epoch."""
        raise NotImplementedError

    def on_epoch_begin(self) -> None:
        self.epoch, self._next = self._next, self._next + 1
        self.reorder()

    def start_at(self, epoch: int) -> None:
        """Begin the next epoch as `epoch`: a resumed training sees the batches it would have seen."""
        self.epoch = self._next = epoch
        self.reorder()


def fit(model: keras.Model, batches: EpochBatches, **kwargs: Any) -> keras.callbacks.History:
    """`model.fit` over `batches` in their own order, batch 0 to len - 1, every epoch.

    An EpochBatches shuffles its rows per epoch from (seed, epoch) already. Keras's fit (shuffle=True)
    would shuffle the order of the batches once more with Python's global `random`, whose state
    depends on how many epochs this process ran: a resumed training took epoch k's batches in
    another order than an uninterrupted one (other weights), and online augmentation's look-ahead
    drew batches that came much later or not at all in that epoch. Every stage fits through here.
    """
    return model.fit(batches, shuffle=False, **kwargs)


class ArrayBatches(EpochBatches):
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
        augment=None,
    ):
        super().__init__()
        # sparse: labels as they are (segmentation masks, one-hot encoded inside the loss).
        self.x = x
        self.y = y if y is None or sparse else encode_labels(y, num_classes)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        # augment: online augmentation (pipeline.data.augment.OnlineAugment), which draws the rows
        # past len(x) (fresh views of the images) for each epoch; None: the rows of x as they are.
        self.augment, self.sparse = augment, sparse
        self.rows = len(x) if augment is None else augment.rows
        self.reorder()

    def order_of(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.rows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.rows)

    def reorder(self) -> None:
        self.order = self.order_of(self.epoch)
        self._next_order = None  # the next epoch's, drawn when online augmentation looks that far

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def _batch_rows(self, i: int, order: np.ndarray | None = None) -> np.ndarray:
        # Sorted indices make memory-mapped reads sequential; order within a batch does not matter.
        order = self.order if order is None else order
        return np.sort(order[i * self.batch_size : (i + 1) * self.batch_size])

    def _upcoming(self, i: int) -> list[tuple[int, np.ndarray]]:
        """(epoch, rows) of the `augment.ahead` batches after batch i, on into the next epoch's: its
        first views are then drawn while this epoch ends, not while its first step waits."""
        ahead = self.augment.ahead
        upcoming = [(self.epoch, self._batch_rows(j)) for j in range(i + 1, min(i + 1 + ahead, len(self)))]
        if len(upcoming) < ahead:
            if self._next_order is None:
                self._next_order = self.order_of(self.epoch + 1)
            for j in range(min(ahead - len(upcoming), len(self))):
                upcoming.append((self.epoch + 1, self._batch_rows(j, self._next_order)))
        return upcoming

    def __getitem__(self, i: int):
        idx = self._batch_rows(i)
        if self.augment is not None:
            x, masks = self.augment.batch(self.epoch, idx, self._upcoming(i))
            return x, masks if self.sparse else np.asarray(self.y[idx % len(self.x)])
        if self.y is None:
            return np.asarray(self.x[idx])
        return np.asarray(self.x[idx]), np.asarray(self.y[idx])


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
    jit: bool | str,
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


def batch_norm_layers(model: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    """The BatchNormalization layers that training updates: trainable ones, nested models included.

    A frozen one (a pretrained backbone's) runs in inference mode and keeps its statistics.
    """
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.trainable:
                found.append(layer)
        else:
            found += batch_norm_layers(layer)
    return found


def training_forward(model: keras.Model) -> Callable:
    """model(x, training=True), compiled once on TensorFlow and JAX (eager, it took twice as long)."""
    if keras.backend.backend() == "jax":
        import jax

        call = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=True)[1])

        def forward(x):
            variables = model.non_trainable_variables
            new = call([v.value for v in model.trainable_variables], [v.value for v in variables], x)
            for v, value in zip(variables, new, strict=True):
                v.assign(value)

        return forward
    if keras.backend.backend() != "tensorflow":
        return lambda x: model(x, training=True)
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=True), reduce_retracing=True)


def estimate_batch_norm(model: keras.Model, batches, forward: Callable | None = None) -> int:
    """Set every trainable BatchNormalization layer's moving mean and variance to its population
    statistics over `batches` (the training split, as it trains), for the weights the model has now.

    A moving average taken while training lags behind the weights: after a few hundred steps the
    statistics still mix in those of the untrained network, and a cnn right on 0.99 of its training
    batches was right on 0.28 of its test images. Each batch runs forward in training mode (every
    layer sees its inputs normalised as in training); with momentum 0 a layer's moving statistics
    are that batch's, and they are combined into the mean and variance of all rows (law of total
    variance). Nothing else changes: the weights, and the random generators' states (dropout), are
    as before, so training goes on exactly as it would have. `forward` is training_forward(model),
    made while the momenta are 0 (a compiled one keeps that); returns the number of layers updated.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    stats = {id(v) for layer in layers for v in (layer.moving_mean, layer.moving_variance)}
    others = [v for v in model.non_trainable_variables if id(v) not in stats]
    saved = [keras.ops.convert_to_numpy(v) for v in others]
    momenta = [layer.momentum for layer in layers]
    total = 0
    sums = [[0.0, 0.0, 0.0] for _ in layers]  # per layer: sums of n * mean, n * mean**2, n * var
    try:
        for layer in layers:
            layer.momentum = 0.0
        forward = forward or training_forward(model)
        for i in range(len(batches)):
            x = batches[i]
            x = x[0] if isinstance(x, tuple) else x
            forward(x)
            n = len(x)
            total += n
            for acc, layer in zip(sums, layers, strict=True):
                mean = keras.ops.convert_to_numpy(layer.moving_mean).astype("float64")
                var = keras.ops.convert_to_numpy(layer.moving_variance).astype("float64")
                acc[0] += n * mean
                acc[1] += n * mean**2
                acc[2] += n * var
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        for v, value in zip(others, saved, strict=True):
            v.assign(value)
    for (s_mean, s_square, s_var), layer in zip(sums, layers, strict=True):
        mean = s_mean / total
        var = s_var / total + np.maximum(s_square / total - mean**2, 0.0)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
    return len(layers)


class PreciseBatchNorm(keras.callbacks.Callback):
    """Re-estimates BatchNormalization's statistics (estimate_batch_norm) over the training batches
    after an epoch's training steps: before its validation, so val metrics, the best epoch and the
    saved model all use statistics of the weights they belong to.

    Put it before the callbacks that save the model at an epoch's end.
    """

    def __init__(self, batches):
        super().__init__()
        self.batches = batches
        self.stale = False
        self._forward: dict[tuple[int, ...], Callable] = {}  # per set of trainable BN layers

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.stale = True

    def _refresh(self) -> None:
        if not self.stale:
            return
        self.stale = False
        layers = batch_norm_layers(self.model)
        if not layers:
            return
        key = tuple(id(layer) for layer in layers)
        if key not in self._forward:  # traced at its first call, with the momenta at 0
            self._forward[key] = training_forward(self.model)
        estimate_batch_norm(self.model, self.batches, self._forward[key])

    def on_test_begin(self, logs=None) -> None:  # validation inside fit()
        self._refresh()

    def on_epoch_end(self, epoch: int, logs=None) -> None:  # an epoch without validation
        self._refresh()


class Checkpoints:
    """A model's resumable progress: the last epoch's model and optimizer, the best weights, the state.

    Lives outside the stage's DVC outputs (DVC deletes those before a stage runs), so a training
    killed mid-way resumes at its last completed epoch on the next `dvc repro`. The fingerprint of
    the params and data it was made with guards against resuming a different training.
    """

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = Path(folder), fingerprint
        self.best = self.folder / "best.weights.h5"
        self.state_file = self.folder / "state.json"

    def read_state(self) -> dict | None:
        """The saved state, whichever training wrote it; None if there is none."""
        if not self.state_file.is_file():
            return None
        try:
            return json.loads(self.state_file.read_text())
        except json.JSONDecodeError:
            return None

    @property
    def last(self) -> Path:
        """The file of the last checkpointed epoch: the one the state names."""
        state = self.read_state() or {}
        return self.folder / state.get("last", "last.keras")

    def resumable(self) -> dict | None:
        """The saved state if it belongs to this very training (and its epoch's file is there), else None."""
        state = self.read_state()
        if state is None or state.get("fingerprint") != self.fingerprint:
            return None
        return state if (self.folder / state.get("last", "last.keras")).is_file() else None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def save(self, model: keras.Model, state: dict, before_state: Callable[[], None] | None = None) -> None:
        """The model (with its optimizer) as the epoch's checkpoint: see save_with."""
        self.save_with(model.save, ".keras", state, before_state)

    def save_with(
        self,
        write: Callable[[Path], None],
        suffix: str,
        state: dict,
        before_state: Callable[[], None] | None = None,
    ) -> None:
        """`write(path)` the epoch's file under a name of its own, then the state that names it (by
        rename), then remove older epochs' files: a kill at any moment leaves a state whose file
        holds exactly the epoch it says.

        `before_state` runs in between: what must be stored before the state marks the epoch done.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{state['epoch']:04d}{suffix}"
        tmp = self.folder / f"epoch.tmp{suffix}"
        write(tmp)
        os.replace(tmp, self.folder / name)
        if before_state is not None:
            before_state()
        tmp_state = self.folder / "state.tmp.json"
        tmp_state.write_text(json.dumps({**state, "last": name, "fingerprint": self.fingerprint}))
        os.replace(tmp_state, self.state_file)
        for old in self.folder.glob("epoch-*"):
            if old.name != name:
                old.unlink(missing_ok=True)


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
