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

    from pipeline import metrics, plots, training
    from pipeline.data.arrays import load_split, read_manifest, write_json

    manifest = read_manifest(args.data)
    classes = manifest["classes"]
    model_file = args.model / "model.keras"
    if not model_file.is_file():
        raise UserError(f"{model_file}: missing; run the train stage for models.{args.name} first")
    if manifest.get("task") == "segmentation":
        from pipeline.tasks import segmentation  # noqa: F401 - registers the loss that load_model reads back
    model = keras.saving.load_model(model_file)
    x, y = load_split(args.data, "test")
    if len(x) == 0:
        raise UserError(f"datasets.{p.dataset}: the test split is empty; raise test_fraction or add images")
    args.reports.mkdir(parents=True, exist_ok=True)
    if manifest.get("task") == "segmentation":
        flat, line = evaluate_segmentation(args.name, p, model, x, y, manifest, args.reports)
        run_id = log_to_training_run(params, args.name, model_file, flat, args.reports, "test_mean_iou")
        print(f"{line}; MLflow run {run_id}")
        return

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
    # Test samples captioned true -> predicted, mistakes first (stable sort keeps the split's order).
    shown = np.argsort(pred == y, kind="stable")[:16]
    captions = [f"{classes[int(y[i])]} -> {classes[int(pred[i])]}" for i in shown]
    overlay_title = f"{args.name}: test samples, true -> predicted"
    if np.asarray(x[:1]).ndim == 4:  # images: two rows of eight
        plots.image_grid(
            [np.asarray(x[shown[:8]]), np.asarray(x[shown[8:]])],
            args.reports / "overlays.png",
            title=overlay_title,
            image_titles=[captions[:8], captions[8:]],
        )
    else:  # sequences and videos: one sample a row, drawn as what it is
        rows = [np.asarray(x[[i]]) for i in shown[:6]]
        plots.sample_grid(rows, args.reports / "overlays.png", captions[:6], overlay_title)

    flat = {f"test_{k}": v for k, v in summary.items() if isinstance(v, int | float)}
    flat.update({f"test_shift_{s}_accuracy": v for s, v in shift.items()})
    flat.update(
        {f"test_{c}_{m}": v[m] for c, v in scores["per_class"].items() for m in ("precision", "recall")}
    )
    run_id = log_to_training_run(params, args.name, model_file, flat, args.reports, "test_accuracy")
    print(
        f"evaluate {args.name}: test accuracy {summary['accuracy']:.4f}, macro F1 {summary['macro_f1']:.4f}, "
        f"accuracy at shift {largest}px {shift[largest]:.4f}; MLflow run {run_id}"
    )


REPORTS = ("metrics.json", "confusion.png", "roc.png", "shift.png", "overlays.png")  # both tasks write these


def log_to_training_run(
    params, name: str, model_file: Path, flat: dict, reports: Path, champion_metric: str
) -> str:
    """Test metrics and report files into the MLflow run that trained this very model file.

    The model becomes a new registered version; `champion_metric` decides whether it is the champion.
    """
    from pipeline import tracking

    run_id = tracking.find_training_run(params.tracking, name, model_file)
    if run_id is None:
        print(f"evaluate {name}: its training run is not in the tracking store; logging a new run")
        run_id = tracking.new_run(params.tracking, name, {"model": name, "note": "training run not found"})
    tracking.log_metrics(run_id, {k: v for k, v in flat.items() if v is not None})
    tracking.log_artifacts(run_id, [reports / n for n in REPORTS])
    tracking.log_artifacts(run_id, [Path("params.yaml"), Path("dvc.lock")], "pipeline")
    if flat.get(champion_metric) is not None:
        registered = tracking.register_model(
            params.tracking, run_id, name, champion_metric, flat[champion_metric]
        )
        if registered:
            new, champion = registered
            print(f"evaluate {name}: registered as version {new}; champion is version {champion}")
    return run_id


def evaluate_segmentation(
    name: str, p, model, x: np.ndarray, y: np.ndarray, manifest: dict, reports: Path
) -> tuple[dict, str]:
    """Pixel and object scores, the reports of a segmentation model; returns (MLflow metrics, summary line).

    confusion.png is the pixel confusion matrix; confusion.json lists one row per object (true
    class -> class it was found as), so `dvc plots` draws the object-level confusion matrix.
    """
    from pipeline import metrics, plots, segmentation
    from pipeline.data.arrays import write_json
    from pipeline.training import predict_outputs

    classes, background = manifest["classes"], manifest["background"]
    fg = segmentation.foreground_ids(classes, background)
    bg = classes.index(background) if background is not None else None

    def predict(images: np.ndarray) -> np.ndarray:
        return predict_outputs(model, np.asarray(images))

    scores = segmentation.evaluate(predict, x, y, classes, background, p.min_component)
    shift = {
        str(s): segmentation.evaluate(
            predict,
            metrics.shift_images(x, s),
            metrics.shift_images(y, s),
            classes,
            background,
            p.min_component,
        )["mean_iou"]
        for s in p.shifts
    }
    cm = scores["confusion_matrix"]
    counts = scores["counts"]
    errors = [v["relative_error"] for v in counts.values() if v["relative_error"] is not None]
    summary = {
        "task": "segmentation",
        "mean_iou": scores["mean_iou"],
        "mean_dice": scores["mean_dice"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "per_class": {c: {"iou": scores["iou"][c], "dice": scores["dice"][c]} for c in classes},
        "counts": counts,
        "max_count_error": max(errors) if errors else None,
        "pixel_confusion": {t: {q: cm[i][j] for j, q in enumerate(classes)} for i, t in enumerate(classes)},
        "shift_mean_iou": shift,
        "shift_drop": shift[str(min(p.shifts))] - shift[str(max(p.shifts))],
        "test_images": len(x),
    }
    write_json(reports / "metrics.json", summary)
    none = "none"  # the 'no object' side of a pair where the classes have no background
    write_json(
        reports / "confusion.json",
        [
            {
                "actual": classes[t] if t is not None else none,
                "predicted": classes[q] if q is not None else none,
            }
            for t, q in scores["pairs"]
        ],
    )
    title = f"{name} on {p.dataset} (test)"
    plots.confusion_matrix(cm, classes, reports / "confusion.png", f"{title}: pixels")
    plots.roc_curves(
        scores["roc_true"], scores["roc_proba"], classes, reports / "roc.png", f"{title}: pixels"
    )
    plots.shift_curve(shift, reports / "shift.png", f"{name}: translation test", "test mean IoU (objects)")
    n = min(8, len(x))
    frames = np.asarray(x[:n])
    pred = predict(frames).argmax(axis=-1)
    plots.image_grid(
        [frames, plots.mask_overlay(frames, y[:n], bg), plots.mask_overlay(frames, pred, bg)],
        reports / "overlays.png",
        ["frame", "truth", "prediction"],
        title=f"{name}: {plots.overlay_legend(classes, bg)}",
    )

    flat = {f"test_{k}": summary[k] for k in ("mean_iou", "mean_dice", "pixel_accuracy", "max_count_error")}
    for c in classes:
        flat[f"test_iou_{c}"] = scores["iou"][c]
        flat[f"test_dice_{c}"] = scores["dice"][c]
    for c, v in counts.items():
        flat.update({f"test_count_true_{c}": v["true"], f"test_count_predicted_{c}": v["predicted"]})
        flat[f"test_count_error_{c}"] = v["relative_error"]
    flat.update({f"test_shift_{s}_mean_iou": v for s, v in shift.items()})
    per_class = ", ".join(f"{classes[c]} {scores['iou'][classes[c]] or 0:.3f}" for c in fg)
    count_err = ", ".join(f"{c} {v['relative_error'] or 0:.1%}" for c, v in counts.items())
    line = (
        f"evaluate {name}: test mean IoU {summary['mean_iou'] or 0:.4f} ({per_class}); "
        f"count error {count_err}"
    )
    return flat, line


if __name__ == "__main__":
    run_cli(main)
