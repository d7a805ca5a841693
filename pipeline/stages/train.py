"""DVC stage `train`: build a model by name, fit it, save it and log the run to MLflow."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked, parser, start


def main() -> None:
    ap = parser(__doc__, "models")
    ap.add_argument("--data", type=Path, required=True, help="prepared dataset folder (val split)")
    ap.add_argument("--train", type=Path, required=True, help="augmented training split folder")
    ap.add_argument("--out", type=Path, required=True, help="output folder for model.keras")
    ap.add_argument("--reports", type=Path, required=True, help="folder for history.csv and curves")
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder for resumable progress")
    ap.add_argument("--weights", type=Path, help="folder of imported ImageNet weights (import_weights stage)")
    args = ap.parse_args()
    params = load_checked()
    p = params.model(args.name)
    keras = start(params)

    from pipeline import plots, tracking, training
    from pipeline.data.arrays import atomic_dir, load_split, read_manifest
    from pipeline.models import build
    from pipeline.params import arch_kwargs
    from pipeline.runtime import distribution
    from pipeline.tasks.transfer import build as build_transfer
    from pipeline.tasks.transfer import fit_two_phases

    manifest = read_manifest(args.data)
    classes = manifest["classes"]
    segmentation = manifest.get("task") == "segmentation"
    x, y = load_split(args.train, "train")
    vx, vy = load_split(args.data, "val")
    if len(vx) == 0:
        raise UserError(f"datasets.{p.dataset}: the val split is empty; raise val_fraction or add images")
    n_classes = len(classes)
    train_data = training.ArrayBatches(x, y, p.batch_size, True, params.seed, n_classes, sparse=segmentation)
    val_data = training.ArrayBatches(
        vx, vy, max(p.batch_size, 256), False, params.seed, n_classes, sparse=segmentation
    )
    loss, metrics, extra = segmentation_objective(p, manifest) if segmentation else (None, None, {})
    checkpoints = training.Checkpoints(args.checkpoints, fingerprint(params, args.name, manifest, len(x)))
    state = checkpoints.resumable()
    with distribution(params.runtime):
        if state:
            print(f"train {args.name}: resuming after epoch {state['epoch'] + 1} from {args.checkpoints}")
            model = keras.saving.load_model(checkpoints.last)
            train_data.start_at(state["epoch"] + 1)
        else:
            checkpoints.clear()
            try:
                if p.architecture == "transfer":
                    model = build_transfer(p, tuple(manifest["shape"]), len(classes), args.weights)
                else:
                    model = build(p.architecture, tuple(manifest["shape"]), len(classes), **arch_kwargs(p))
            except ValueError as exc:  # hyperparameters that do not fit the data, e.g. too deep for the image
                raise UserError(f"models.{args.name}: {exc} (dataset '{p.dataset}')") from None
            training.compile_model(
                model,
                p,
                len(classes),
                len(train_data),
                params.runtime.jit_compile,
                loss=loss,
                metrics=metrics,
            )
    if params.runtime.verbose:
        model.summary()

    run_params = {
        **tracking.flatten("model", p.model_dump()),
        **tracking.flatten("dataset", manifest["params"]),
        **tracking.flatten("runtime", params.runtime.model_dump()),
        "seed": str(params.seed),
        "model_name": args.name,
        "train_images": str(len(x)),
        **extra,
    }
    tags = {
        **tracking.provenance_tags(),
        "model": args.name,
        "architecture": p.architecture,
        "dataset": p.dataset,
        "dataset_hash": manifest["source_hash"],
    }
    resume_run = state["run_id"] if state else None
    with (
        atomic_dir(args.out) as tmp,
        tracking.training_run(params.tracking, args.name, run_params, tags, resume_run) as run,
    ):
        logged = tracking.last_step(run.info.run_id, "loss") if state else -1
        epoch_logger = tracking.EpochLogger(logged_through=logged)
        # Waits for the epoch's metrics before marking it done: a resume then finds no gap in the run.
        best = training.BestAndResume(
            checkpoints, run.info.run_id, p.early_stopping, state, flush=epoch_logger.wait
        )
        if p.architecture == "transfer":  # feature extraction, then fine-tuning, in this one run
            rt = params.runtime
            history = fit_two_phases(
                model,
                p,
                train_data,
                val_data,
                len(classes),
                epoch_logger,
                best,
                start=state["epoch"] + 1 if state else 0,
                jit=rt.jit_compile,
                verbose=rt.verbose,
                scope=lambda: distribution(rt),
            )
        else:
            model.fit(
                train_data,
                validation_data=val_data,
                epochs=p.epochs,
                initial_epoch=state["epoch"] + 1 if state else 0,
                # Log the epoch before checkpointing it: a kill in between then repeats no step.
                callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=epoch_logger.log), best],
                verbose=params.runtime.verbose,
            )
            history = best.history_columns()
        epoch_logger.wait()
        model_file = tmp / "model.keras"
        training.save_model(model, model_file)
        args.reports.mkdir(parents=True, exist_ok=True)
        write_history(history, args.reports / "history.csv")
        plots.training_curves(
            history, args.reports / "training_curves.png", f"{args.name} ({p.architecture})"
        )
        tracking.set_tags(
            {tracking.MODEL_HASH_TAG: tracking.file_md5(model_file), "best_epoch": str(best.best_epoch + 1)}
        )
        tracking.log_artifacts(
            run.info.run_id, [args.reports / "training_curves.png", args.reports / "history.csv"]
        )
        tracking.log_model(model)
    checkpoints.clear()
    shown = "val_mean_iou" if segmentation else "val_accuracy"
    print(
        f"train {args.name}: best epoch {best.best_epoch + 1}, {shown} "
        f"{history[shown][best.best_epoch]:.4f}; MLflow run {run.info.run_id}"
    )


def fingerprint(params, name: str, manifest: dict, train_images: int) -> str:
    """What a resumed training must share with the one that saved the checkpoint."""
    p = params.model(name)
    parts = [p.model_dump(), params.seed, params.augment_for(p.dataset).model_dump(), manifest, train_images]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def segmentation_objective(p, manifest: dict) -> tuple:
    """(loss, per-epoch metrics, run params) of a segmentation model, from its params."""
    from pipeline.tasks import segmentation

    classes = manifest["classes"]
    weights = p.class_weights
    if weights == "balanced":  # from the pixel shares of the prepared training split
        weights = segmentation.balanced_class_weights([manifest["counts"]["train"][c] for c in classes])
    loss = segmentation.SegmentationLoss(len(classes), p.loss, weights, p.focal_gamma)
    metrics = segmentation.epoch_metrics(
        classes, segmentation.foreground_ids(classes, manifest["background"])
    )
    return loss, metrics, {"class_weights_used": str(weights)}


def write_history(history: dict[str, list[float]], path: Path) -> None:
    keys = sorted(history)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for i in range(len(history[keys[0]])):
            w.writerow([i + 1, *(f"{history[k][i]:.6g}" for k in keys)])


if __name__ == "__main__":
    run_cli(main)
