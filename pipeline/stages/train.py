"""DVC stage `train`: build a model by name, fit it, save it and log the run to MLflow."""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked, parser, start


def main() -> None:
    ap = parser(__doc__, "models")
    ap.add_argument("--data", type=Path, required=True, help="prepared dataset folder (val split)")
    ap.add_argument("--train", type=Path, required=True, help="augmented training split folder")
    ap.add_argument("--out", type=Path, required=True, help="output folder for model.keras")
    ap.add_argument("--reports", type=Path, required=True, help="folder for history.csv and curves")
    args = ap.parse_args()
    params = load_checked()
    p = params.model(args.name)
    keras = start(params)

    from pipeline import plots, tracking, training
    from pipeline.data.arrays import atomic_dir, load_split, read_manifest
    from pipeline.models import build
    from pipeline.params import arch_kwargs

    manifest = read_manifest(args.data)
    classes = manifest["classes"]
    segmentation = manifest.get("task") == "segmentation"
    x, y = load_split(args.train, "train")
    vx, vy = load_split(args.data, "val")
    if len(vx) == 0:
        raise UserError(f"datasets.{p.dataset}: the val split is empty; raise val_fraction or add images")
    workers = params.runtime.workers
    train_data = training.ArrayBatches(
        x, y, p.batch_size, True, params.seed, len(classes), workers, sparse=segmentation
    )
    val_data = training.ArrayBatches(
        vx, vy, max(p.batch_size, 256), False, params.seed, len(classes), workers, sparse=segmentation
    )
    try:
        model = build(p.architecture, tuple(manifest["shape"]), len(classes), **arch_kwargs(p))
    except ValueError as exc:  # hyperparameters that do not fit the data, e.g. too deep for the image
        raise UserError(f"models.{args.name}: {exc} (dataset '{p.dataset}')") from None
    loss, metrics, extra = segmentation_objective(p, manifest) if segmentation else (None, None, {})
    training.compile_model(
        model, p, len(classes), len(train_data), params.runtime.jit_compile, loss=loss, metrics=metrics
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
    epoch_logger = tracking.EpochLogger()
    with (
        atomic_dir(args.out) as tmp,
        tracking.training_run(params.tracking, args.name, run_params, tags) as run,
    ):
        history = model.fit(
            train_data,
            validation_data=val_data,
            epochs=p.epochs,
            callbacks=[
                *training.callbacks(p),
                keras.callbacks.LambdaCallback(on_epoch_end=epoch_logger.log),
            ],
            verbose=params.runtime.verbose,
        ).history
        model_file = tmp / "model.keras"
        training.save_model(model, model_file)
        best_epoch = min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)
        args.reports.mkdir(parents=True, exist_ok=True)
        write_history(history, args.reports / "history.csv")
        plots.training_curves(
            history, args.reports / "training_curves.png", f"{args.name} ({p.architecture})"
        )
        tracking.set_tags(
            {tracking.MODEL_HASH_TAG: tracking.file_md5(model_file), "best_epoch": str(best_epoch + 1)}
        )
        tracking.log_artifacts(
            run.info.run_id, [args.reports / "training_curves.png", args.reports / "history.csv"]
        )
        tracking.log_artifacts(run.info.run_id, [model_file], "model")
        shown = "val_mean_iou" if segmentation else "val_accuracy"
        print(
            f"train {args.name}: best epoch {best_epoch + 1}, {shown} "
            f"{history[shown][best_epoch]:.4f}; MLflow run {run.info.run_id}"
        )


def segmentation_objective(p, manifest: dict) -> tuple:
    """(loss, per-epoch metrics, run params) of a segmentation model, from its params."""
    from pipeline import segmentation

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
