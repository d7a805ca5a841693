"""Training a model of `models:` (classification, segmentation, transfer): the train stage's work.

Around pipeline.training's batches, compile and checkpoints: build the network by name, fit it
(the transfer task in two phases), resume a killed training in the same MLflow run, save the model,
history.csv and curves, and log the run.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import keras
import numpy as np

from pipeline.errors import UserError
from pipeline.params import Params, TrainParams
from pipeline.training import (
    ArrayBatches,
    BestAndResume,
    Checkpoints,
    PreciseBatchNorm,
    compile_model,
    fit,
    save_model,
)

INPUT_EXAMPLE_IMAGES = 2  # validation images logged with the model as its input example


def fingerprint(params: Params, name: str, manifest: dict, train_images: int) -> str:
    """What a resumed training must share with the one that saved the checkpoint."""
    p = params.model(name)
    parts = [p.model_dump(), params.seed, params.augment_for(p.dataset).model_dump(), manifest, train_images]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def build_model(p: TrainParams, manifest: dict, weights: Path | None, name: str = "*") -> keras.Model:
    """The network of models.<name> for its dataset; ValueError where the hyperparameters do not fit.

    A cnn whose blocks shrink the map to one pixel before the last block builds, with a warning."""
    from pipeline.models.registry import build
    from pipeline.params import arch_kwargs

    classes = len(manifest["classes"])
    if p.architecture == "cnn":
        from pipeline.models.classifiers import collapsed_block

        shape = manifest["shape"]
        warning = collapsed_block(shape, p.filters, p.strides, p.padding, p.pool_size)
        if warning:
            print(f"warning: models.{name}.filters: {warning}", file=sys.stderr)
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
    on_epoch: Callable[[int, Mapping[str, float]], None] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Fit models.<name>, resuming a killed training; save out/model.keras, history.csv and curves;
    log the run to MLflow. Returns the line that sums it up.

    `on_epoch(epoch, logs)` sees each epoch's metrics as they are logged, `tags` go onto the run (a
    sweep's trial reports to Ray Tune and tags its MLflow run as a child of the sweep's)."""
    from pipeline import plots, tracking
    from pipeline.data.arrays import atomic_dir, load_split, read_manifest
    from pipeline.data.augment import online_for
    from pipeline.history import write_history
    from pipeline.runtime import distribution, is_chief

    if not is_chief(params.runtime):
        # Another worker of a multi_worker training: every step in step with the chief's (collective
        # ops, predict too), but its model, reports, checkpoints and MLflow store are scratch, dropped
        # when the process ends. DVC_ROOT: the scratch store's artifacts beside it (tracking.repo_root).
        scratch = Path(tempfile.mkdtemp(prefix="convpipe-worker-"))
        atexit.register(shutil.rmtree, scratch, True)
        out, reports, checkpoints_dir = scratch / "out", scratch / "reports", scratch / "checkpoints"
        os.environ["DVC_ROOT"] = str(scratch)
        store = params.tracking.model_copy(update={"uri": f"sqlite:///{scratch / 'mlflow.db'}"})
        params = params.model_copy(update={"tracking": store})

    p = params.model(name)
    manifest = read_manifest(data)
    classes = manifest["classes"]
    segmentation = manifest.get("task") == "segmentation"
    x, y = load_split(train, "train")
    vx, vy = load_split(data, "val")
    if len(vx) == 0:
        raise UserError(f"datasets.{p.dataset}: the val split is empty; raise val_fraction or add images")
    n_classes = len(classes)
    online = online_for(train, params.runtime.workers)  # None: offline (the copies are rows of x)
    train_data = ArrayBatches(x, y, p.batch_size, True, params.seed, n_classes, segmentation, online)
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
                model = build_model(p, manifest, weights, name)
            except ValueError as exc:  # hyperparameters that do not fit the data, e.g. too deep for the image
                raise UserError(f"models.{name}: {exc} (dataset '{p.dataset}')") from None
            compile_model(model, p, n_classes, len(train_data), params.runtime.jit_compile, loss, metrics)
    if params.runtime.verbose:
        model.summary()

    extra = {"train_images": str(train_data.rows), **extra}
    start = state["epoch"] + 1 if state else 0
    with (
        atomic_dir(out) as tmp,
        tracking.start_training_run(
            params, name, p, manifest, p.architecture, extra, state["run_id"] if state else None, tags
        ) as run,
    ):
        logged = tracking.last_step(run.info.run_id, "loss") if state else -1
        epoch_logger = tracking.EpochLogger(logged_through=logged)
        if on_epoch is not None:
            epoch_logger.listeners.append(on_epoch)
        # Waits for the epoch's metrics before marking it done: a resume then finds no gap in the run.
        best = BestAndResume(checkpoints, run.info.run_id, p.early_stopping, state, flush=epoch_logger.wait)
        # BatchNorm's statistics re-estimated over the training split after each epoch's steps, before
        # its validation: val metrics, the best epoch and the saved model use the epoch's own statistics.
        # Its own batches of the stored rows (shuffled as in training), apart from online augmentation's.
        bn_batches = ArrayBatches(x, y, p.batch_size, True, params.seed, n_classes, sparse=segmentation)
        precise_bn = PreciseBatchNorm(bn_batches)
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
                precise_bn=precise_bn,
                jit=rt.jit_compile,
                verbose=rt.verbose,
                scope=lambda: distribution(rt),
            )
        else:
            fit(
                model,
                train_data,
                validation_data=val_data,
                epochs=p.epochs,
                initial_epoch=start,
                # Log the epoch before checkpointing it: a kill in between then repeats no step.
                callbacks=[precise_bn, keras.callbacks.LambdaCallback(on_epoch_end=epoch_logger.log), best],
                verbose=params.runtime.verbose,
            )
            history = best.history_columns()
        epoch_logger.wait()
        if online is not None:
            online.close()
        model_file = tmp / "model.keras"
        save_model(model, model_file)
        reports.mkdir(parents=True, exist_ok=True)
        write_history(history, reports / "history.csv")
        plots.training_curves(history, reports / "training_curves.png", f"{name} ({p.architecture})")
        tracking.set_tags(
            {tracking.MODEL_HASH_TAG: tracking.file_md5(model_file), "best_epoch": str(best.best_epoch + 1)}
        )
        tracking.log_artifacts(run.info.run_id, [reports / "training_curves.png", reports / "history.csv"])
        # A few validation images as the served model's input example (and, with its outputs for
        # them, its signature); the class names for whoever loads it from the registry.
        task = "segmentation" if segmentation else "classification"
        info = {"classes": [str(c) for c in classes], "dataset": p.dataset, "task": task}
        info["resize"] = manifest.get("params", {}).get("resize", "stretch")  # how predict fits images
        tracking.log_model(model, np.asarray(vx[:INPUT_EXAMPLE_IMAGES]), info)
    checkpoints.clear()
    shown = "val_mean_iou" if segmentation else "val_accuracy"
    return (
        f"train {name}: best epoch {best.best_epoch + 1}, {shown} "
        f"{history[shown][best.best_epoch]:.4f}; MLflow run {run.info.run_id}"
    )
