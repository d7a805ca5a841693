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
    ap.add_argument("--weights", type=Path, help="folder of imported ImageNet weights (import_weights stage)")
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
    x, y = load_split(args.train, "train")
    vx, vy = load_split(args.data, "val")
    if len(vx) == 0:
        raise UserError(f"datasets.{p.dataset}: the val split is empty; raise val_fraction or add images")
    workers = params.runtime.workers
    train_data = training.ArrayBatches(x, y, p.batch_size, True, params.seed, len(classes), workers)
    val_data = training.ArrayBatches(
        vx, vy, max(p.batch_size, 256), False, params.seed, len(classes), workers
    )
    if p.architecture == "transfer":
        from pipeline import transfer_training

        model = transfer_training.build(p, tuple(manifest["shape"]), len(classes), args.weights)
    else:
        model = build(p.architecture, tuple(manifest["shape"]), len(classes), **arch_kwargs(p))
    training.compile_model(model, p, len(classes), len(train_data), params.runtime.jit_compile)
    if params.runtime.verbose:
        model.summary()

    run_params = {
        **tracking.flatten("model", p.model_dump()),
        **tracking.flatten("dataset", manifest["params"]),
        **tracking.flatten("runtime", params.runtime.model_dump()),
        "seed": str(params.seed),
        "model_name": args.name,
        "train_images": str(len(x)),
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
        if p.architecture == "transfer":  # feature extraction, then fine-tuning, in this one run
            rt = params.runtime
            history = transfer_training.fit_two_phases(
                model, p, train_data, val_data, len(classes), rt.jit_compile, rt.verbose, epoch_logger
            )
        else:
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
        print(
            f"train {args.name}: best epoch {best_epoch + 1}, val_accuracy "
            f"{history['val_accuracy'][best_epoch]:.4f}; MLflow run {run.info.run_id}"
        )


def write_history(history: dict[str, list[float]], path: Path) -> None:
    keys = sorted(history)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for i in range(len(history[keys[0]])):
            w.writerow([i + 1, *(f"{history[k][i]:.6g}" for k in keys)])


if __name__ == "__main__":
    run_cli(main)
