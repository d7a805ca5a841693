"""Figures: each is a PNG of the expected size, and the same data gives the same bytes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline import plots


def png(path) -> Image.Image:
    img = Image.open(path)
    assert img.format == "PNG"
    return img


def twice(draw, tmp_path, name: str) -> Image.Image:
    """Draw the same figure into two files; they must be byte-identical (DVC hashes them)."""
    draw(tmp_path / "a" / name)
    draw(tmp_path / "b" / name)
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    return png(tmp_path / "a" / name)


def test_training_curves_one_panel_per_metric(tmp_path):
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.4, 0.8], "val_accuracy": [0.3, 0.7]}
    img = twice(lambda p: plots.training_curves(history, p, "m"), tmp_path, "curves.png")
    assert img.size == (900, 350)  # two panels of 4.5 x 3.5 inches at 100 dpi


def test_confusion_matrix(tmp_path):
    img = twice(
        lambda p: plots.confusion_matrix([[3, 1], [0, 4]], ["x", "y"], p, "cm"), tmp_path, "confusion.png"
    )
    assert img.size == (260, 240)  # (1 + 0.8 * 2) x (0.8 + 0.8 * 2) inches


@pytest.mark.parametrize("classes", [["neg", "pos"], ["a", "b", "c"]])
def test_roc_curves_binary_and_one_vs_rest(tmp_path, classes):
    y = np.array([0, 1, 0, 1])  # class c (if any) is absent: it gets no curve, and no error
    proba = np.random.default_rng(0).dirichlet(np.ones(len(classes)), size=4)
    img = twice(lambda p: plots.roc_curves(y, proba, classes, p, "roc"), tmp_path, "roc.png")
    assert img.size == (450, 450)


def test_shift_curve(tmp_path):
    img = twice(lambda p: plots.shift_curve({"0": 1.0, "2": 0.9, "4": 0.5}, p, "shift"), tmp_path, "s.png")
    assert img.size == (450, 350)


def test_image_grid_of_gray_and_colour_rows(tmp_path):
    gray = np.zeros((3, 8, 8, 1), np.uint8)
    gray[:, 2:6, 2:6] = 255
    colour = np.full((2, 8, 8, 3), (255, 0, 0), np.uint8)
    img = twice(
        lambda p: plots.image_grid([gray, colour], p, ["gray", "colour"], title="grid"), tmp_path, "g.png"
    )
    assert img.size == (360, 280)  # 3 columns of 1.2 in; 2 rows of 1.2 in plus 0.4 in for titles
    pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
    assert ((pixels[:, 0] > 200) & (pixels[:, 1] < 50) & (pixels[:, 2] < 50)).any()  # the red images
    assert ((pixels == 0).all(axis=1)).any()  # the gray images' black border
