"""Training a model of `models:` (classification, segmentation, transfer): the train stage's work.

Around pipeline.training's batches, compile and checkpoints: build the network by name, fit it
(the transfer task in two phases), resume a killed training in the same MLflow run, save the model,
history.csv and curves, and log the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras

from pipeline.errors import UserError
from pipeline.params import Params, TrainParams
from pipeline.training import ArrayBatches, BestAndResume, Checkpoints, compile_model, save_model


def fingerprint(params: Params, name: str, manifest: dict, train_images: int) -> str:
    """What a resumed training must share with the one that saved the checkpoint."""
    p = params.model(name)
    parts = [p.model_dump(), params.seed, params.augment_for(p.dataset).model_dump(), manifest, train_images]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def build_model(p: TrainParams, manifest: dict, weights: Path | None) -> keras.Model:
    """The network of models.<name> for its dataset; ValueError where the hyperparameters do not fit."""
    from pipeline.models.registry import build
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
