"""The lecture's hand-made filter, and how it compares with the filter `filter_net` learns.

ANGLE_FILTER weighs a '/' diagonal most. Slid over an image (cross-correlation, which is what
Keras' Conv2D computes), its largest response says whether the image holds a '/' stroke: the
`shapes` data draws one into every `angle` image and into no other class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ANGLE_FILTER = np.array([[0.1, 0.1, 0.9], [0.1, 0.9, 0.1], [0.9, 0.1, 0.1]])


class NotOneChannel(ValueError):
    """The data or model is not grayscale 2D, which both filters here are made for."""


def conv2d(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'Valid' cross-correlation of one (h, w) image or a batch (n, h, w) with a 2D kernel."""
    images = np.asarray(images, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(images, kernel.shape, axis=(-2, -1))
    return np.einsum("...ijkl,kl->...ij", windows, kernel)


def max_response(images: np.ndarray, kernel: np.ndarray = ANGLE_FILTER) -> np.ndarray:
    """max(conv2D(image, kernel)) of each uint8 image in (n, h, w[, 1]), scaled to 0..1 as the models do."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    if x.ndim == 4:
        if x.shape[-1] != 1:
            raise NotOneChannel(f"one-channel 2D images expected, got rows of shape {x.shape[1:]}")
        x = x[..., 0]
    return conv2d(x, kernel).max(axis=(-2, -1))


def learned_filter(model) -> tuple[np.ndarray, float]:
    """The (k, k) kernel and bias of a trained filter_net's one filter."""
    kernel, bias = (np.asarray(w) for w in model.get_layer("filter").get_weights())
    if kernel.ndim != 4 or kernel.shape[2:] != (1, 1):
        raise NotOneChannel(f"one 2D filter on one channel expected, got a kernel of shape {kernel.shape}")
    return kernel[:, :, 0, 0], float(bias[0])


def separation(scores: np.ndarray, labels: np.ndarray, positive: int) -> float:
    """ROC AUC of a score as a detector of the positive class: 0.5 is chance, 1.0 separates fully."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(labels) == positive, scores))


def filter_report(data_dir: Path, model_file: Path, out_dir: Path, name: str = "filter_net") -> dict:
    """Score a prepared test split with the hand-made and the learned filter; write filters.png.

    Returns (and the caller writes) each score's separation of the positive class, the last one in
    the manifest's class list (`angle` in angle-versus-rest).
    """
    import keras

    from pipeline import plots
    from pipeline.data.arrays import load_split, read_manifest

    classes = read_manifest(data_dir)["classes"]
    x, y = load_split(data_dir, "test")
    x = np.asarray(x)
    model = keras.saving.load_model(model_file)
    kernel, bias = learned_filter(model)
    hand = max_response(x)
    # Exactly what the model's max_response layer outputs: the same scan with the learned kernel.
    learned = max_response(x, kernel) + bias
    positive = len(classes) - 1
    summary = {
        "classes": classes,
        "positive": classes[positive],
        "hand_made_auc": separation(hand, y, positive),
        "learned_auc": separation(learned, y, positive),
        "learned_kernel": np.round(kernel.astype(np.float64), 4).tolist(),
        "learned_bias": round(bias, 4),
        "test_images": len(y),
    }
    plots.filter_comparison(
        [ANGLE_FILTER, kernel],
        [hand, learned],
        y,
        classes,
        [
            f"hand-made '/' filter (AUC {summary['hand_made_auc']:.3f})",
            f"{name}'s learned filter (AUC {summary['learned_auc']:.3f})",
        ],
        Path(out_dir) / "filters.png",
    )
    return summary
