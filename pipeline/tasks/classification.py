"""The classification task at evaluation: test scores, the translation test, and their reports.

(Training a classifier needs nothing beyond pipeline.training: its loss and accuracy are the
defaults of `compile_model`.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def evaluate_model(
    name: str,
    p,
    model,
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    reports: Path,
    figures: np.ndarray | None = None,
) -> tuple[dict, str]:
    """Scores, confusion, ROC, translation test and test samples of a classifier; writes its reports.

    Images also get their class-activation maps (gradcam/gradcam.png; pipeline.tasks.gradcam) and,
    with `figures` (where each test image's figure is drawn), the maps' pointing accuracy in details.json.
    Returns (MLflow metrics, summary line).
    """
    from pipeline import metrics, plots, training
    from pipeline.data.arrays import write_json

    def predict(images: np.ndarray) -> np.ndarray:
        return training.predict_proba(model, images)

    proba = predict(x)
    scores = metrics.classification_metrics(y, proba, classes)
    shift = metrics.shift_robustness(predict, x, y, p.shifts)
    largest = str(max(p.shifts))
    # metrics.json holds the headline figures only (the metrics stage gathers them into the DVC metrics
    # file, a `dvc exp show` column each);
    # details.json beside it the per-class and per-shift ones.
    summary = {
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "roc_auc": scores.get("roc_auc"),
        "shift_drop": shift[str(min(p.shifts))] - shift[largest],
        "test_images": len(y),
    }
    details = {"per_class": scores["per_class"], "shift_accuracy": shift}
    write_json(reports / "metrics.json", summary)
    write_json(reports / "details.json", details)
    pred = proba.argmax(axis=1)
    write_json(
        reports / "confusion.json",
        [{"actual": classes[int(t)], "predicted": classes[int(q)]} for t, q in zip(y, pred, strict=True)],
    )
    title = f"{name} on {p.dataset} (test)"
    plots.confusion_matrix(scores["confusion_matrix"], classes, reports / "confusion.png", title)
    write_json(reports / "roc.json", plots.roc_curves(y, proba, classes, reports / "roc.png", title))
    plots.shift_curve(shift, reports / "shift.png", f"{name}: translation test")
    # Test samples captioned true -> predicted, mistakes first (stable sort keeps the split's order).
    shown = np.argsort(pred == y, kind="stable")[:16]
    captions = [f"{classes[int(y[i])]} -> {classes[int(pred[i])]}" for i in shown]
    overlay_title = f"{name}: test samples, true -> predicted"
    if np.asarray(x[:1]).ndim == 4:  # images: two rows of eight
        plots.image_grid(
            [np.asarray(x[shown[:8]]), np.asarray(x[shown[8:]])],
            reports / "overlays.png",
            title=overlay_title,
            image_titles=[captions[:8], captions[8:]],
        )
    else:  # sequences and videos: one sample a row, drawn as what it is
        rows = [np.asarray(x[[i]]) for i in shown[:6]]
        plots.sample_grid(rows, reports / "overlays.png", captions[:6], overlay_title)

    flat = {metric_name(k): v for k, v in summary.items() if isinstance(v, int | float)}
    flat.update({f"test_shift_{s}_accuracy": v for s, v in shift.items()})
    flat.update(
        {f"test_{c}_{m}": v[m] for c, v in scores["per_class"].items() for m in ("precision", "recall")}
    )
    if np.asarray(x[:1]).ndim == 4:  # images: what the network looks at
        from pipeline.tasks import gradcam

        looked = gradcam.explain(name, model, x, y, pred, classes, figures, reports / "gradcam")
        details["gradcam_method"] = looked.pop("method")
        details["gradcam"] = looked
        write_json(reports / "details.json", details)
        flat.update({f"test_gradcam_{k}": v for k, v in looked.items()})
    line = (
        f"evaluate {name}: test accuracy {summary['accuracy']:.4f}, macro F1 {summary['macro_f1']:.4f}, "
        f"accuracy at shift {largest}px {shift[largest]:.4f}"
    )
    return flat, line


def metric_name(key: str) -> str:
    """A test figure's MLflow name: test_<key>, without doubling a leading test_ (test_images)."""
    return key if key.startswith("test_") else f"test_{key}"
