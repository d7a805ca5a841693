"""Segmentation: the loss and per-epoch metrics (keras.ops only, so any backend), and test scores.

Masks are class indices (N, H, W); models output per-pixel probabilities (N, H, W, classes).
Test scores come from the pixel confusion matrix (IoU, Dice, pixel accuracy) and from connected
components (how many objects of each class were found, against how many there are).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
from keras import ops
from scipy import ndimage

LOSSES = ("cross_entropy", "dice", "focal")
EIGHT_CONNECTED = np.ones((3, 3), bool)  # diagonal neighbours join: a thin diagonal track is one object
ROC_PIXELS = 250_000  # at most this many test pixels (an even stride through them) for the ROC


@keras.saving.register_keras_serializable(package="convpipe")
class SegmentationLoss(keras.losses.Loss):
    """A weighted sum of per-pixel cross-entropy, soft Dice and focal loss.

    Cross-entropy and focal loss are averaged over pixels, each pixel weighted by its true class's
    weight; Dice is 1 - the mean over classes of the soft Dice of the whole batch, which does not
    let the background's many pixels drown the thin tracks.
    """

    def __init__(
        self,
        num_classes: int,
        weights: Mapping[str, float],
        class_weights: Sequence[float] | None = None,
        focal_gamma: float = 2.0,
        name: str = "segmentation_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        unknown = set(weights) - set(LOSSES)
        if unknown:
            raise ValueError(f"unknown loss term(s) {sorted(unknown)}; valid: {', '.join(LOSSES)}")
        self.num_classes = int(num_classes)
        self.weights = {k: float(v) for k, v in weights.items()}
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.focal_gamma = float(focal_gamma)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        onehot = ops.one_hot(ops.cast(y_true, "int32"), self.num_classes, dtype="float32")
        p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        if self.class_weights is None:
            pixel_weight = ops.ones_like(onehot[..., 0])
        else:
            pixel_weight = ops.sum(onehot * ops.convert_to_tensor(self.class_weights, "float32"), axis=-1)
        log_pt = ops.sum(onehot * ops.log(p), axis=-1)
        total = ops.convert_to_tensor(0.0, "float32")
        if self.weights.get("cross_entropy"):
            total += self.weights["cross_entropy"] * ops.mean(-pixel_weight * log_pt)
        if self.weights.get("focal"):
            pt = ops.exp(log_pt)
            focal = -pixel_weight * ops.power(1.0 - pt, self.focal_gamma) * log_pt
            total += self.weights["focal"] * ops.mean(focal)
        if self.weights.get("dice"):
            axes = tuple(range(len(onehot.shape) - 1))  # everything but the class axis
            inter = ops.sum(onehot * p, axis=axes)
            sizes = ops.sum(onehot, axis=axes) + ops.sum(p, axis=axes)
            dice = (2.0 * inter + 1.0) / (sizes + 1.0)  # +1: a class absent from both counts as found
            total += self.weights["dice"] * (1.0 - ops.mean(dice))
        return total

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "weights": self.weights,
            "class_weights": self.class_weights,
            "focal_gamma": self.focal_gamma,
        }


def balanced_class_weights(pixels: Sequence[int]) -> list[float]:
    """Inverse square root of each class's pixel share, scaled so the average pixel weighs 1.

    The square root tempers plain inverse frequency, which would weigh a rare class so heavily that
    the model paints it too wide.
    """
    counts = np.maximum(np.asarray(pixels, np.float64), 1.0)
    share = counts / counts.sum()
    w = share**-0.5
    return (w / (w * share).sum()).round(6).tolist()


def epoch_metrics(classes: Sequence[str], foreground: Sequence[int]) -> list[keras.metrics.Metric]:
    """Pixel accuracy, mean IoU over the object classes and each class's IoU, accumulated per epoch."""
    k = len(classes)
    out = [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        keras.metrics.IoU(k, list(foreground), name="mean_iou", sparse_y_pred=False),
    ]
    out += [keras.metrics.IoU(k, [c], name=f"iou_{classes[c]}", sparse_y_pred=False) for c in foreground]
    return out


def foreground_ids(classes: Sequence[str], background: str | None) -> list[int]:
    return [i for i, c in enumerate(classes) if c != background]


# ---------------------------------------------------------------- test scores (numpy)


def pixel_confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) pixel counts: rows true class, columns predicted class."""
    t = np.asarray(y_true, np.int64).ravel()
    p = np.asarray(y_pred, np.int64).ravel()
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores_from_confusion(
    cm: np.ndarray, classes: Sequence[str], foreground: Sequence[int]
) -> dict[str, object]:
    """Per-class IoU and Dice, mean IoU and Dice over the foreground classes, and pixel accuracy.

    A class absent from both truth and prediction has no IoU (None) and is left out of the means.
    """
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    iou: dict[str, float | None] = {}
    dice: dict[str, float | None] = {}
    for i, c in enumerate(classes):
        union = tp[i] + fp[i] + fn[i]
        iou[c] = float(tp[i] / union) if union else None
        dice[c] = float(2 * tp[i] / (2 * tp[i] + fp[i] + fn[i])) if union else None
    fg_iou = [iou[classes[i]] for i in foreground if iou[classes[i]] is not None]
    fg_dice = [dice[classes[i]] for i in foreground if dice[classes[i]] is not None]
    return {
        "iou": iou,
        "dice": dice,
        "mean_iou": float(np.mean(fg_iou)) if fg_iou else None,
        "mean_dice": float(np.mean(fg_dice)) if fg_dice else None,
        "pixel_accuracy": float(tp.sum() / cm.sum()) if cm.sum() else None,
    }


def components(mask: np.ndarray, cls: int, min_pixels: int = 1) -> tuple[np.ndarray, int]:
    """8-connected objects of class `cls` with at least `min_pixels` pixels: (label image, count)."""
    labels, n = ndimage.label(np.asarray(mask) == cls, EIGHT_CONNECTED)
    if min_pixels > 1 and n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < min_pixels
        small[0] = False
        labels[small[labels]] = 0
        labels, n = ndimage.label(labels > 0, EIGHT_CONNECTED)
    return labels, n


def count_objects(mask: np.ndarray, foreground: Sequence[int], min_pixels: int = 1) -> dict[int, int]:
    return {c: components(mask, c, min_pixels)[1] for c in foreground}


def track_pairs(
    truth: np.ndarray,
    pred: np.ndarray,
    foreground: Sequence[int],
    background: int | None,
    min_pixels: int = 1,
) -> list[tuple[int | None, int | None]]:
    """(true class, predicted class) per object, for an object-level confusion matrix.

    A true object is called by the object class most of its pixels were predicted as, or the
    background if none of them was (missed); a predicted object touching no true object is a
    false find, (background, its class). None stands for 'no object' where there is no background.
    """
    pairs: list[tuple[int | None, int | None]] = []
    truth, pred = np.asarray(truth), np.asarray(pred)
    is_object = np.isin(truth, list(foreground))
    for c in foreground:
        labels, n = components(truth, c, min_pixels)
        for k in range(1, n + 1):
            votes = np.bincount(pred[labels == k].ravel(), minlength=max(foreground) + 1)[list(foreground)]
            pairs.append((c, foreground[int(votes.argmax())] if votes.any() else background))
        labels, n = components(pred, c, min_pixels)
        for k in range(1, n + 1):
            if not is_object[labels == k].any():
                pairs.append((background, c))
    return pairs


def relative_error(predicted: int, true: int) -> float | None:
    """|predicted - true| / true; None when there is nothing to find."""
    return abs(predicted - true) / true if true else None


def evaluate(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    background: str | None,
    min_pixels: int = 1,
    batch_size: int = 64,
) -> dict[str, object]:
    """Scores on a split, streamed batch by batch: pixel scores, object counts, object pairs, ROC pixels.

    `predict` maps images to probabilities (n, H, W, classes).
    """
    k = len(classes)
    fg = foreground_ids(classes, background)
    bg = classes.index(background) if background is not None else None
    cm = np.zeros((k, k), np.int64)
    true_counts = dict.fromkeys(fg, 0)
    pred_counts = dict.fromkeys(fg, 0)
    frame_errors = dict.fromkeys(fg, 0)  # sum over frames of |predicted - true| objects
    pairs: list[tuple[int | None, int | None]] = []
    stride = max(1, int(np.ceil(y.size / ROC_PIXELS)))
    roc_true, roc_proba = [], []
    offset = 0  # index of the first pixel of the batch, so the ROC stride runs on across batches
    for start in range(0, len(x), batch_size):
        proba = np.asarray(predict(np.asarray(x[start : start + batch_size])))
        truth = np.asarray(y[start : start + batch_size])
        pred = proba.argmax(axis=-1)
        cm += pixel_confusion(truth, pred, k)
        for t, p in zip(truth, pred, strict=True):
            n_true, n_pred = count_objects(t, fg, min_pixels), count_objects(p, fg, min_pixels)
            for c in fg:
                true_counts[c] += n_true[c]
                pred_counts[c] += n_pred[c]
                frame_errors[c] += abs(n_pred[c] - n_true[c])
            pairs += track_pairs(t, p, fg, bg, min_pixels)
        first = (-offset) % stride
        roc_true.append(truth.reshape(-1)[first::stride])
        roc_proba.append(proba.reshape(-1, k)[first::stride])
        offset += truth.size
    out = scores_from_confusion(cm, classes, fg)
    out["confusion_matrix"] = cm.tolist()
    out["counts"] = {
        classes[c]: {
            "true": true_counts[c],
            "predicted": pred_counts[c],
            "relative_error": relative_error(pred_counts[c], true_counts[c]),
            "mean_abs_error_per_frame": frame_errors[c] / len(x) if len(x) else None,
        }
        for c in fg
    }
    out["pairs"] = pairs
    out["roc_true"] = np.concatenate(roc_true) if roc_true else np.zeros(0, np.int64)
    out["roc_proba"] = np.concatenate(roc_proba) if roc_proba else np.zeros((0, k))
    return out


# ---------------------------------------------------------------- train and evaluate stages


def objective(p, manifest: dict) -> tuple[SegmentationLoss, list[keras.metrics.Metric], dict[str, str]]:
    """(loss, per-epoch metrics, run params) of a segmentation model, from its params."""
    classes = manifest["classes"]
    weights = p.class_weights
    if weights == "balanced":  # from the pixel shares of the prepared training split
        weights = balanced_class_weights([manifest["counts"]["train"][c] for c in classes])
    focal = {} if p.focal_gamma is None else {"focal_gamma": p.focal_gamma}  # only a focal term reads it
    loss = SegmentationLoss(len(classes), p.loss, weights, **focal)
    metrics = epoch_metrics(classes, foreground_ids(classes, manifest["background"]))
    return loss, metrics, {"class_weights_used": str(weights)}


def evaluate_model(
    name: str, p, model, x: np.ndarray, y: np.ndarray, manifest: dict, reports: Path
) -> tuple[dict, str]:
    """Pixel and object scores, the reports of a segmentation model; returns (MLflow metrics, summary line).

    confusion.png is the pixel confusion matrix; confusion.json lists one row per object (true
    class -> class it was found as), so `dvc plots` draws the object-level confusion matrix.
    """
    from pipeline import metrics, plots
    from pipeline.data.arrays import write_json
    from pipeline.training import predict_outputs

    classes, background = manifest["classes"], manifest["background"]
    fg = foreground_ids(classes, background)
    bg = classes.index(background) if background is not None else None

    def predict(images: np.ndarray) -> np.ndarray:
        return predict_outputs(model, np.asarray(images))

    scores = evaluate(predict, x, y, classes, background, p.min_component)
    shift = {
        str(s): evaluate(
            predict,
            metrics.shift_images(x, s),
            metrics.shift_images(y[..., None], s)[..., 0],  # (N, H, W) masks: moved as their images
            classes,
            background,
            p.min_component,
        )["mean_iou"]
        for s in p.shifts
    }
    cm = scores["confusion_matrix"]
    counts = scores["counts"]
    errors = [v["relative_error"] for v in counts.values() if v["relative_error"] is not None]
    # metrics.json holds the headline figures (the metrics stage gathers them); details.json the
    # per-class ones.
    summary = {
        "mean_iou": scores["mean_iou"],
        "mean_dice": scores["mean_dice"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "max_count_error": max(errors) if errors else None,
        "shift_drop": shift[str(min(p.shifts))] - shift[str(max(p.shifts))],
        "test_images": len(x),
    }
    details = {
        "task": "segmentation",
        "per_class": {c: {"iou": scores["iou"][c], "dice": scores["dice"][c]} for c in classes},
        "counts": counts,
        "pixel_confusion": {t: {q: cm[i][j] for j, q in enumerate(classes)} for i, t in enumerate(classes)},
        "shift_mean_iou": shift,
    }
    write_json(reports / "metrics.json", summary)
    write_json(reports / "details.json", details)
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
    roc = plots.roc_curves(
        scores["roc_true"], scores["roc_proba"], classes, reports / "roc.png", f"{title}: pixels"
    )
    write_json(reports / "roc.json", roc)
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
