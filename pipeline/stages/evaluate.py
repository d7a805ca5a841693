"""DVC stage `evaluate`: score the saved model on the test split; log into its training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked, parser, start


def main() -> None:
    ap = parser(__doc__, "models")
    ap.add_argument("--data", type=Path, required=True, help="prepared dataset folder (test split)")
    ap.add_argument("--model", type=Path, required=True, help="folder holding model.keras")
    ap.add_argument("--reports", type=Path, required=True, help="folder for metrics and plots")
    args = ap.parse_args()
    params = load_checked()
    p = params.model(args.name)
    keras = start(params)

    from pipeline import metrics, plots, tracking, training
    from pipeline.data.arrays import load_split, read_manifest, write_json

    manifest = read_manifest(args.data)
    classes = manifest["classes"]
    model_file = args.model / "model.keras"
    if not model_file.is_file():
        raise UserError(f"{model_file}: missing; run the train stage for models.{args.name} first")
    model = keras.saving.load_model(model_file)
    x, y = load_split(args.data, "test")
    if len(x) == 0:
        raise UserError(f"datasets.{p.dataset}: the test split is empty; raise test_fraction or add images")

    def predict(images: np.ndarray) -> np.ndarray:
        return training.predict_proba(model, images)

    proba = predict(x)
    scores = metrics.classification_metrics(y, proba, classes)
    shift = metrics.shift_robustness(predict, x, y, p.shifts)
    largest = str(max(p.shifts))
    summary = {
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "roc_auc": scores.get("roc_auc"),
        "per_class": scores["per_class"],
        "shift_accuracy": shift,
        "shift_drop": shift[str(min(p.shifts))] - shift[largest],
        "test_images": len(y),
    }
    args.reports.mkdir(parents=True, exist_ok=True)
    write_json(args.reports / "metrics.json", summary)
    pred = proba.argmax(axis=1)
    write_json(
        args.reports / "confusion.json",
        [{"actual": classes[int(t)], "predicted": classes[int(q)]} for t, q in zip(y, pred, strict=True)],
    )
    title = f"{args.name} on {p.dataset} (test)"
    plots.confusion_matrix(scores["confusion_matrix"], classes, args.reports / "confusion.png", title)
    plots.roc_curves(y, proba, classes, args.reports / "roc.png", title)
    plots.shift_curve(shift, args.reports / "shift.png", f"{args.name}: translation test")

    run_id = tracking.find_training_run(params.tracking, args.name, model_file)
    if run_id is None:
        print(f"evaluate {args.name}: its training run is not in the tracking store; logging a new run")
        run_id = tracking.new_run(
            params.tracking, args.name, {"model": args.name, "note": "training run not found"}
        )
    flat = {f"test_{k}": v for k, v in summary.items() if isinstance(v, int | float)}
    flat.update({f"test_shift_{s}_accuracy": v for s, v in shift.items()})
    flat.update(
        {f"test_{c}_{m}": v[m] for c, v in scores["per_class"].items() for m in ("precision", "recall")}
    )
    tracking.log_metrics(run_id, flat)
    reports = [args.reports / n for n in ("metrics.json", "confusion.png", "roc.png", "shift.png")]
    tracking.log_artifacts(run_id, reports)
    tracking.log_artifacts(run_id, [Path("params.yaml"), Path("dvc.lock")], "pipeline")
    registered = tracking.register_model(
        params.tracking, run_id, args.name, "test_accuracy", summary["accuracy"]
    )
    if registered:
        new, champion = registered
        print(f"evaluate {args.name}: registered as version {new}; champion is version {champion}")
    print(
        f"evaluate {args.name}: test accuracy {summary['accuracy']:.4f}, macro F1 {summary['macro_f1']:.4f}, "
        f"accuracy at shift {largest}px {shift[largest]:.4f}; MLflow run {run_id}"
    )


if __name__ == "__main__":
    run_cli(main)
