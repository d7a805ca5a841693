"""The lecture's "data augmentation & learned symmetries", measured on the default pipeline's models.

A CNN has translation built in (convolution and pooling); a feed-forward net does not, and neither
has rotation. What is not built in can be learned from augmented data:

- translation: a dense net trained on centred figures without and with random shifts, beside a CNN,
  all under the shift test of `evaluate` (pipeline.metrics.shift_robustness) on the same centred
  test images: the augmented net's accuracy drop at the largest shift moves toward the CNN's. (On
  figures drawn anywhere, the default `shapes`, a dense net already sees every position, and a shift
  pushes figures out of the frame for any model: there, shifts teach it nothing it lacks);
- rotation: a CNN trained without and with random rotations, on test images turned about their centre.

A turn may only be used where it keeps the label: ROTATION_INVARIANT (pipeline.params.lecture) says
which `shapes` classes that holds for, and params.yaml's check refuses a rotation experiment on others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import

Predict = Callable[[np.ndarray], np.ndarray]  # uint8 images -> class probabilities


def turn_images(x: np.ndarray, degrees: float) -> np.ndarray:
    """Images (n, h, w, c) turned counter-clockwise about their centre; the border is mirrored
    (cv2.BORDER_REFLECT_101, as the rotation augmentation of params.yaml), so no black corners appear."""
    import albumentations as A
    import cv2

    x = np.asarray(x)
    if degrees == 0:
        return x
    turn = A.Rotate(limit=(degrees, degrees), border_mode=cv2.BORDER_REFLECT_101, p=1.0)
    return np.stack([turn(image=image)["image"].reshape(image.shape) for image in x])


def rotation_accuracy(
    predict: Predict, x: np.ndarray, y: np.ndarray, angles: Sequence[float]
) -> dict[str, float]:
    """Accuracy on the test images turned by each angle: {'0': acc, '15': acc, ...}."""
    return {_key(a): float((predict(turn_images(x, a)).argmax(axis=1) == y).mean()) for a in angles}


def _key(angle: float) -> str:
    return f"{angle:g}"


def translation_summary(
    shift: dict[str, dict[str, float]], plain: str, augmented: str, reference: str
) -> dict:
    """Each model's shift accuracies and drop at the largest shift; the augmented net's drop against
    the plain one's (target: at most half)."""
    drops = {name: acc[min(acc, key=int)] - acc[max(acc, key=int)] for name, acc in shift.items()}
    ratio = drops[augmented] / drops[plain] if drops[plain] > 0 else float("nan")
    return {
        "models": {"plain": plain, "augmented": augmented, "reference": reference},
        "largest_shift": int(max(shift[plain], key=int)),
        "accuracy": shift,
        "drop": drops,
        "drop_ratio": ratio,
        "target": "drop_ratio <= 0.5 (the augmented net's drop at the largest shift at least halves)",
        "met": bool(ratio <= 0.5),
    }


def rotation_summary(turned: dict[str, dict[str, float]], plain: str, augmented: str) -> dict:
    """Each model's accuracy per angle; the gain of augmentation at 45 degrees (target: >= 0.10)."""
    at = _key(45.0) if _key(45.0) in turned[plain] else max(turned[plain], key=float)
    gain = turned[augmented][at] - turned[plain][at]
    return {
        "models": {"plain": plain, "augmented": augmented},
        "accuracy": turned,
        "gain_angle": float(at),
        "gain": gain,
        "target": f"gain >= 0.10 (augmented minus plain accuracy at {at} degrees)",
        "met": bool(gain >= 0.10),
    }


def figure(translation: dict | None, rotation: dict | None, path: Path) -> None:
    """Accuracy against shift (left) and against the angle of turn (right), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in (translation, rotation) if p is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, part in zip(axes[0], panels, strict=True):
        is_shift = part is translation
        for role, name in part["models"].items():
            acc = part["accuracy"][name]
            xs = sorted(acc, key=float)
            label = (
                f"{name} ({'with' if role == 'augmented' else 'without' if role == 'plain' else 'built in'})"
            )
            ax.plot([float(k) for k in xs], [acc[k] for k in xs], marker="o", label=label)
        if is_shift:
            ax.set(
                xlabel="shift (pixels, right and down)",
                title=f"translation: drop ratio {part['drop_ratio']:.2f}",
            )
        else:
            ax.set(
                xlabel="turn of the test images (degrees)",
                title=f"rotation: +{part['gain']:.2f} at {part['gain_angle']:g} degrees",
            )
        ax.set(ylabel="test accuracy", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("learned symmetries: with and without augmentation")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def experiments(translation, rotation, test_of: Callable[[str], tuple], out: Path) -> dict:
    """Both experiments (lecture.translation, lecture.rotation; either may be None) on the models'
    test splits: writes out/symmetries.json and out/symmetries.png, returns the summary.

    test_of(name) -> (predict, test images, test labels, the model's shifts).
    """
    from pipeline.data.arrays import write_json
    from pipeline.metrics import shift_robustness

    summary: dict = {"translation": None, "rotation": None}
    if translation is not None:
        # Every model on the plain one's test images and shifts: the reference cnn may have learned
        # its classes on other images (figures anywhere), but it is measured on the same test.
        _, x, y, shifts = test_of(translation.plain)
        shift = {}
        for name in (translation.plain, translation.augmented, translation.reference):
            shift[name] = shift_robustness(test_of(name)[0], x, y, shifts)
        summary["translation"] = translation_summary(
            shift, translation.plain, translation.augmented, translation.reference
        )
    if rotation is not None:
        turned = {}
        for name in (rotation.plain, rotation.augmented):
            predict, x, y, _ = test_of(name)
            turned[name] = rotation_accuracy(predict, x, y, rotation.angles)
        summary["rotation"] = rotation_summary(turned, rotation.plain, rotation.augmented)
    write_json(Path(out) / "symmetries.json", summary)
    figure(summary["translation"], summary["rotation"], Path(out) / "symmetries.png")
    return summary
