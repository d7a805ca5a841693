"""Classification metrics against hand-computed values, and the translation test."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import metrics

CLASSES = ["a", "b", "c"]


def one_hot_proba(pred: list[int], n: int = 3) -> np.ndarray:
    p = np.full((len(pred), n), 0.1)
    p[np.arange(len(pred)), pred] = 0.8
    return p


def test_metrics_by_hand():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = [0, 1, 1, 1, 2, 0]
    m = metrics.classification_metrics(y, one_hot_proba(pred), CLASSES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # precision = right / predicted as the class; recall = right / truly the class
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    f1 = [0.5, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert 0.0 <= m["roc_auc"] <= 1.0


def test_binary_auc_by_hand():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    m = metrics.classification_metrics(y, np.stack([1 - p1, p1], axis=1), ["neg", "pos"])
    # Of the 4 (positive, negative) pairs, 3 rank the positive higher.
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.75)  # 0.35 falls below 0.5


def test_no_auc_when_a_class_is_missing_and_no_crash_for_an_unpredicted_class():
    y = np.array([0, 0, 1])
    m = metrics.classification_metrics(y, one_hot_proba([0, 1, 1]), CLASSES)
    assert "roc_auc" not in m
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "support": 0}


def test_shift_moves_a_bright_pixel_by_exactly_n_and_keeps_the_shape():
    x = np.zeros((2, 10, 10, 1), np.uint8)
    x[0, 3, 4, 0] = 255
    x[1, 5, 1, 0] = 255
    for n in (0, 1, 2, 4):
        shifted = metrics.shift_images(x, n)
        assert shifted.shape == x.shape and shifted.dtype == x.dtype
        assert list(zip(*np.nonzero(shifted[..., 0]), strict=True)) == [(0, 3 + n, 4 + n), (1, 5 + n, 1 + n)]
    gone = metrics.shift_images(x, 6)[0]  # row 3 + 6 = 9 stays, column 4 + 6 = 10 falls off
    assert gone.max() == 0


def test_shift_repeats_the_edge_rows_and_columns():
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    s = metrics.shift_images(x, 1)[0, ..., 0]
    assert s[0].tolist() == [0, 0, 1, 2]  # top row: the original first row, moved right
    assert s[:, 0].tolist() == [0, 0, 4, 8]
    np.testing.assert_array_equal(s[1:, 1:], x[0, :3, :3, 0])


def test_shift_robustness_by_hand():
    # A "classifier" that says left (class 1) when the brightest pixel is in columns 0-3.
    x = np.zeros((4, 8, 8, 1), np.uint8)
    for i, col in enumerate([1, 2, 5, 6]):
        x[i, 1, col] = 255
    y = np.array([1, 1, 0, 0])

    def predict(images: np.ndarray) -> np.ndarray:
        cols = images[..., 0].reshape(len(images), -1).argmax(axis=1) % 8  # empty image: column 0
        left = cols < 4
        return np.stack([~left, left], axis=1).astype(float)

    acc = metrics.shift_robustness(predict, x, y, [0, 2, 4])
    # shift 2: columns 3, 4, 7, gone -> right, wrong, right, wrong; shift 4: all wrong
    assert acc == {"0": 1.0, "2": 0.5, "4": 0.0}
