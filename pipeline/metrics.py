"""Classification metrics, from scikit-learn where it has them, and the translation test."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class precision and recall, confusion matrix; ROC AUC if binary."""
    y_pred = proba.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, _, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if len(np.unique(y_true)) == len(classes):  # AUC needs every class present
        if len(classes) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
        else:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
    return out


# The axes a translation moves, by the rank of a batch (channels last): a sequence along its
# length, an image right and down, a video right and down in every frame (never in time).
SHIFT_AXES = {3: (1,), 4: (1, 2), 5: (2, 3)}


def shift_images(x: np.ndarray, pixels: int) -> np.ndarray:
    """Move images right and down by `pixels` (sequences along, videos within each frame).

    The uncovered border repeats the edge rows/columns: that keeps the background's statistics,
    so only the figure's position changes.
    """
    x = np.asarray(x)
    if pixels == 0:
        return x
    axes = SHIFT_AXES[x.ndim]
    pad = [(pixels, 0) if a in axes else (0, 0) for a in range(x.ndim)]
    return np.pad(x, pad, mode="edge")[tuple(slice(0, n) for n in x.shape)]


def shift_robustness(
    predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, shifts: Sequence[int]
) -> dict[str, float]:
    """Accuracy on the test images shifted by each number of pixels: {'0': acc, '2': acc, ...}."""
    return {str(s): float((predict(shift_images(x, s)).argmax(axis=1) == y).mean()) for s in shifts}
