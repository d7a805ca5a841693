"""Figures saved as PNG: training curves, confusion matrix, ROC, translation test, image grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

# No creation date or version in the files, so that the same figure gives the same bytes.
_PNG = {"metadata": {"Software": None}, "dpi": 100}


def save(fig, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **_PNG)
    plt.close(fig)


def training_curves(history: Mapping[str, Sequence[float]], path: Path, title: str) -> None:
    names = sorted({k.removeprefix("val_") for k in history})
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for key, style in ((name, "-"), (f"val_{name}", "--")):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str) -> None:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.8 * len(classes)))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    save(fig, path)


def roc_curves(
    y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], path: Path, title: str
) -> list[dict]:
    """ROC of the positive class for a binary task; one-vs-rest per class otherwise.

    Returns the curves as rows {class, fpr, tpr} (roc.json, a DVC plot).
    """
    from sklearn.metrics import auc, roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    targets = [1] if len(classes) == 2 else range(len(classes))
    rows = []
    for c in targets:
        truth = np.asarray(y_true) == c
        if truth.all() or not truth.any():
            continue  # a class absent from the test split has no curve
        fpr, tpr, _ = roc_curve(truth, proba[:, c])
        ax.plot(fpr, tpr, label=f"{classes[c]} (AUC {auc(fpr, tpr):.3f})")
        rows += [
            {"class": classes[c], "fpr": round(float(f), 6), "tpr": round(float(t), 6)}
            for f, t in zip(fpr, tpr, strict=True)
        ]
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save(fig, path)
    return rows


def shift_curve(
    accuracy_by_shift: Mapping[str, float], path: Path, title: str, ylabel: str = "test accuracy"
) -> None:
    shifts = [int(s) for s in accuracy_by_shift]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(shifts, list(accuracy_by_shift.values()), "o-")
    ax.set_xlabel("shift (pixels, right and down)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    fig.tight_layout()
    save(fig, path)


def image_grid(
    rows: Sequence[np.ndarray],
    path: Path,
    row_titles: Sequence[str] = (),
    title: str = "",
    image_titles: Sequence[Sequence[str]] = (),
) -> None:
    """Rows of images (each an array of images), one figure; grayscale shown in grey.

    `image_titles`, if given, has a row of captions per row of images (a row title goes first).
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.2 * n_cols, 1.2 * n_rows + 0.4), squeeze=False)
    for r, images in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                img = np.asarray(images[c])
                if img.ndim == 3 and img.shape[-1] == 1:
                    img = img[..., 0]
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
                if r < len(image_titles) and c < len(image_titles[r]):
                    ax.set_title(image_titles[r][c], fontsize=7)
        if r < len(row_titles):
            axes[r][0].set_title(row_titles[r], fontsize=8, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


# Overlay colours of the object classes, in class order after the background (ColorBrewer Set1).
OVERLAY_COLOURS = (
    ("red", (228, 26, 28)),
    ("blue", (55, 126, 184)),
    ("green", (77, 175, 74)),
    ("purple", (152, 78, 163)),
    ("orange", (255, 127, 0)),
    ("yellow", (255, 255, 51)),
    ("brown", (166, 86, 40)),
    ("pink", (247, 129, 191)),
)


def _colour_of(num_classes: int, background: int | None) -> list[tuple[str, tuple[int, int, int]] | None]:
    """The overlay colour of each class index; None for the background, which stays unpainted."""
    out: list = []
    k = 0
    for c in range(num_classes):
        if c == background:
            out.append(None)
        else:
            out.append(OVERLAY_COLOURS[k % len(OVERLAY_COLOURS)])
            k += 1
    return out


def mask_overlay(
    images: np.ndarray, masks: np.ndarray, background: int | None = 0, alpha: float = 0.6
) -> np.ndarray:
    """RGB uint8 images (n, H, W, 3): each image in grey or colour, its mask's classes painted over it."""
    images, masks = np.asarray(images), np.asarray(masks)
    rgb = images.astype(np.float32)
    if rgb.ndim == 3:
        rgb = rgb[..., None]
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    num_classes = int(masks.max()) + 1 if masks.size else 1
    for c, colour in enumerate(_colour_of(num_classes, background)):
        if colour is not None:
            where = masks == c
            rgb[where] = (1 - alpha) * rgb[where] + alpha * np.asarray(colour[1], np.float32)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def overlay_legend(classes: Sequence[str], background: int | None) -> str:
    """'muon red, alpha blue, beta green': which colour paints which class."""
    colours = _colour_of(len(classes), background)
    return ", ".join(f"{name} {colour[0]}" for name, colour in zip(classes, colours, strict=True) if colour)


def filter_comparison(
    kernels: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    labels: np.ndarray,
    classes: Sequence[str],
    titles: Sequence[str],
    path: Path,
) -> None:
    """One row per filter: its kernel as an image, then its score's histogram for each class."""
    fig, axes = plt.subplots(len(kernels), 2, figsize=(9, 3.2 * len(kernels)), squeeze=False)
    labels = np.asarray(labels)
    for (ax_k, ax_h), kernel, score, title in zip(axes, kernels, scores, titles, strict=True):
        kernel = np.asarray(kernel)
        top = float(np.abs(kernel).max()) or 1.0
        ax_k.imshow(kernel, cmap="RdBu_r", vmin=-top, vmax=top)
        for (i, j), v in np.ndenumerate(kernel):
            color = "white" if abs(v) > 0.6 * top else "black"
            ax_k.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                color=color,
                fontsize=7 if kernel.shape[0] > 3 else 9,
            )
        ax_k.set_xticks([])
        ax_k.set_yticks([])
        ax_k.set_title(f"{kernel.shape[0]}x{kernel.shape[1]} kernel (red +, blue -)", fontsize=9)
        bins = np.linspace(float(np.min(score)), float(np.max(score)), 40)
        for c, name in enumerate(classes):
            ax_h.hist(score[labels == c], bins=bins, alpha=0.6, label=name)
        ax_h.set_xlabel("max over the image of conv2D(image, kernel)")
        ax_h.set_ylabel("test images")
        ax_h.set_title(title, fontsize=10)
        ax_h.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def sample_grid(
    rows: Sequence[np.ndarray], path: Path, row_titles: Sequence[str] = (), title: str = ""
) -> None:
    """Rows of data samples (channels last), drawn as what they are.

    Images (h, w, c) go to `image_grid`; videos (frames, h, w, c) too, one row of frames each;
    sequences (length, c) are drawn as curves, one per channel.
    """
    rank = np.asarray(rows[0]).ndim - 1  # rows are batches of samples
    if rank == 3:
        image_grid(rows, path, row_titles, title)
        return
    if rank == 4:  # one row of frames per video
        videos = [
            (f"{t}: {i}" if t else "", v)
            for r, t in zip(rows, _pad(row_titles, len(rows)), strict=True)
            for i, v in enumerate(np.asarray(r))
        ]
        image_grid([v for _, v in videos], path, [t for t, _ in videos], title)
        return
    if rank != 2:
        raise ValueError(
            f"samples of shape {np.asarray(rows[0]).shape[1:]}: expected sequences, images or videos"
        )
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.8 * n_cols, 1.3 * n_rows + 0.4), squeeze=False)
    for r, samples in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(samples):
                ax.plot(np.asarray(samples[c], dtype=float), linewidth=0.8)
            else:
                ax.axis("off")
        if r < len(row_titles):
            axes[r][0].set_title(row_titles[r], fontsize=8, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def _pad(titles: Sequence[str], n: int) -> list[str]:
    return [*titles, *[""] * (n - len(titles))][:n]


def gan_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    """FID (EfficientNet-Lite0 features) per epoch, and the cycle error where there is one."""
    fids = [k for k in history if k.startswith("fid")]
    cycles = [k for k in history if k.startswith("cycle_error")]
    fig, axes = plt.subplots(1, 2 if cycles else 1, figsize=(9 if cycles else 5, 3.6), squeeze=False)
    epochs = range(1, len(history[fids[0]]) + 1)
    for k in fids:
        axes[0][0].plot(epochs, history[k], "o-", label=k)
    axes[0][0].set(
        xlabel="epoch",
        ylabel="FID (EfficientNet-Lite0 features)",
        title="FID of the fixed sample vs test images",
    )
    axes[0][0].legend()
    if cycles:
        for k in cycles:
            axes[0][1].plot(epochs, history[k], "o-", label=k)
        axes[0][1].set(xlabel="epoch", ylabel="mean |x - g(g(x))| (0..1)", title="cycle reconstruction error")
        axes[0][1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def heatmap_grid(
    rows: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    peaks: Sequence[np.ndarray],
    figures: Sequence[np.ndarray] | None,
    path: Path,
    title: str,
    captions: Sequence[Sequence[str]],
) -> None:
    """Each image twice: as it is (the figure's outline in cyan where known) and under its map, the
    map's peak marked with a red cross."""
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        2 * len(rows), n_cols, figsize=(1.3 * n_cols, 2.6 * len(rows) + 0.5), squeeze=False
    )
    for r, images in enumerate(rows):
        for c in range(n_cols):
            top, bottom = axes[2 * r][c], axes[2 * r + 1][c]
            top.axis("off")
            bottom.axis("off")
            if c >= len(images):
                continue
            img = np.asarray(images[c])
            img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
            cmap = "gray" if img.ndim == 2 else None
            top.imshow(img, cmap=cmap, vmin=0, vmax=255)
            if figures is not None and np.asarray(figures[r][c]).any():
                top.contour(np.asarray(figures[r][c]) > 0, levels=[0.5], colors="cyan", linewidths=0.6)
            top.set_title(captions[r][c], fontsize=7)
            bottom.imshow(img, cmap=cmap, vmin=0, vmax=255)
            bottom.imshow(np.asarray(maps[r][c]), cmap="jet", alpha=0.45)
            pr, pc = peaks[r][c]
            bottom.plot([pc], [pr], "r+", markersize=9, markeredgewidth=1.5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save(fig, path)
