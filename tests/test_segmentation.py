"""Segmentation scores against hand-computed cases: IoU, Dice, pixel accuracy, object counts, losses."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.tasks import segmentation as seg

CLASSES = ["background", "muon", "alpha", "beta"]

# 4x4 truth and prediction, worked out by hand below.
TRUTH = np.array(
    [
        [0, 1, 1, 0],
        [0, 0, 0, 0],
        [2, 2, 0, 3],
        [2, 2, 0, 3],
    ]
)
PRED = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 0, 0],
        [2, 2, 0, 0],
        [2, 0, 0, 3],
    ]
)
# muon: TP 2, FP 1, FN 0 -> IoU 2/3, Dice 4/5; alpha: TP 3, FP 0, FN 1 -> IoU 3/4, Dice 6/7;
# beta: TP 1, FP 0, FN 1 -> IoU 1/2, Dice 2/3; background: TP 7, FP 2, FN 1 -> IoU 7/10.
# pixel accuracy 13/16.


def test_iou_dice_and_accuracy_by_hand():
    cm = seg.pixel_confusion(TRUTH, PRED, 4)
    assert cm.sum() == 16 and cm[1, 1] == 2 and cm[0, 1] == 1 and cm[3, 0] == 1
    s = seg.scores_from_confusion(cm, CLASSES, [1, 2, 3])
    assert s["iou"] == pytest.approx({"background": 0.7, "muon": 2 / 3, "alpha": 0.75, "beta": 0.5})
    assert s["dice"] == pytest.approx({"background": 14 / 17, "muon": 0.8, "alpha": 6 / 7, "beta": 2 / 3})
    assert s["mean_iou"] == pytest.approx((2 / 3 + 0.75 + 0.5) / 3)  # track classes only
    assert s["mean_dice"] == pytest.approx((0.8 + 6 / 7 + 2 / 3) / 3)
    assert s["pixel_accuracy"] == pytest.approx(13 / 16)


def test_absent_class_has_no_iou_and_stays_out_of_the_mean():
    truth = np.array([[0, 1], [0, 1]])
    s = seg.scores_from_confusion(seg.pixel_confusion(truth, truth, 4), CLASSES, [1, 2, 3])
    assert s["iou"]["alpha"] is None and s["dice"]["beta"] is None
    assert s["mean_iou"] == 1.0


def test_components_are_eight_connected_and_size_filtered():
    mask = np.array(
        [
            [3, 0, 0, 0, 0, 3],
            [0, 3, 0, 0, 0, 0],
            [0, 0, 3, 0, 3, 3],
            [0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 3],
        ]
    )
    # A diagonal is one track; the lone corner pixels and the pair are separate objects.
    assert seg.components(mask, 3)[1] == 4
    assert seg.components(mask, 3, min_pixels=2)[1] == 2  # the diagonal (3 px) and the pair
    assert seg.components(mask, 3, min_pixels=3)[1] == 1
    assert seg.count_objects(mask, [1, 2, 3]) == {1: 1, 2: 0, 3: 4}


def test_object_pairs_found_missed_confused_and_false():
    truth = np.zeros((6, 6), int)
    truth[0, 0:3] = 1  # a muon, found as a muon
    truth[5, 0:2] = 3  # a beta, missed
    truth[2:4, 2:4] = 2  # an alpha, most of it called beta
    pred = np.zeros((6, 6), int)
    pred[0, 0:2] = 1
    pred[2:4, 2:4] = 3
    pred[2, 2] = 2
    pred[5, 5] = 1  # a muon where there is nothing
    pairs = seg.track_pairs(truth, pred, [1, 2, 3], 0)
    assert sorted(pairs) == sorted([(1, 1), (2, 3), (3, 0), (0, 1)])


def test_evaluate_counts_objects_and_relative_errors():
    truth = np.zeros((2, 8, 8), np.uint8)
    truth[0, 0, 0:4] = 1
    truth[0, 4:6, 4:6] = 2
    truth[1, 7, 0:3] = 3
    truth[1, 0:2, 6] = 3
    pred = truth.copy()
    pred[1, 0:2, 6] = 0  # one beta missed
    pred[1, 4, 4] = 3  # and a false one
    pred[0, 6, 0] = 3  # and another false one

    def predict(images):  # an oracle of our making: one-hot of `pred` for the requested frames
        idx = images[:, 0, 0, 0].astype(int)
        return np.eye(4)[pred[idx]]

    x = np.arange(2, dtype=np.uint8).reshape(2, 1, 1, 1) * np.ones((1, 8, 8, 1), np.uint8)
    out = seg.evaluate(predict, x, truth, CLASSES, "background", batch_size=1)
    assert out["counts"]["muon"] == {
        "true": 1,
        "predicted": 1,
        "relative_error": 0.0,
        "mean_abs_error_per_frame": 0.0,
    }
    assert out["counts"]["beta"]["true"] == 2 and out["counts"]["beta"]["predicted"] == 3
    assert out["counts"]["beta"]["relative_error"] == pytest.approx(0.5)
    assert out["counts"]["beta"]["mean_abs_error_per_frame"] == pytest.approx((1 + 0) / 2)
    assert out["iou"]["alpha"] == 1.0 and out["iou"]["beta"] == pytest.approx(3 / 7)
    assert out["roc_true"].shape == (128,) and out["roc_proba"].shape == (128, 4)
    # min_component drops the lone false pixels from the counts.
    out = seg.evaluate(predict, x, truth, CLASSES, "background", min_pixels=2)
    assert out["counts"]["beta"]["predicted"] == 1


def test_balanced_weights_favour_rare_classes_and_average_one():
    w = seg.balanced_class_weights([900, 100, 0, 25])
    assert w[3] > w[1] > w[0]
    share = np.array([900, 100, 1, 25]) / 1026
    assert float(np.dot(w, share)) == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- the Keras side


def test_loss_terms_by_hand():
    y = np.array([[[0, 1]]])  # one frame, 1 x 2 pixels
    p = np.array([[[[0.5, 0.5], [0.25, 0.75]]]], dtype="float32")
    ce = -(np.log(0.5) + np.log(0.75)) / 2
    loss = seg.SegmentationLoss(2, {"cross_entropy": 1.0})
    assert float(loss(y, p)) == pytest.approx(ce, rel=1e-5)
    weighted = seg.SegmentationLoss(2, {"cross_entropy": 1.0}, class_weights=[1.0, 3.0])
    assert float(weighted(y, p)) == pytest.approx((-np.log(0.5) - 3 * np.log(0.75)) / 2, rel=1e-5)
    # Soft Dice per class over the batch, +1 smoothing: (2 * overlap + 1) / (true + predicted + 1).
    dice = 1 - ((2 * 0.5 + 1) / (1 + 0.75 + 1) + (2 * 0.75 + 1) / (1 + 1.25 + 1)) / 2
    assert float(seg.SegmentationLoss(2, {"dice": 1.0})(y, p)) == pytest.approx(dice, rel=1e-5)
    focal = -(0.5**2 * np.log(0.5) + 0.25**2 * np.log(0.75)) / 2
    assert float(seg.SegmentationLoss(2, {"focal": 1.0})(y, p)) == pytest.approx(focal, rel=1e-5)
    both = seg.SegmentationLoss(2, {"cross_entropy": 0.5, "dice": 2.0})
    assert float(both(y, p)) == pytest.approx(0.5 * ce + 2 * dice, rel=1e-5)


def test_loss_rejects_unknown_terms_and_round_trips_its_config():
    with pytest.raises(ValueError, match="valid: cross_entropy, dice, focal"):
        seg.SegmentationLoss(2, {"hinge": 1.0})
    loss = seg.SegmentationLoss(3, {"dice": 1.0, "focal": 0.5}, [1.0, 2.0, 3.0], focal_gamma=1.5)
    again = seg.SegmentationLoss.from_config(loss.get_config())
    assert (again.num_classes, again.weights, again.class_weights, again.focal_gamma) == (
        3,
        {"dice": 1.0, "focal": 0.5},
        [1.0, 2.0, 3.0],
        1.5,
    )


def test_epoch_metrics_agree_with_the_test_scores():
    onehot = np.eye(4, dtype="float32")[PRED][None]
    metrics = {m.name: m for m in seg.epoch_metrics(CLASSES, [1, 2, 3])}
    for m in metrics.values():
        m.update_state(TRUTH[None], onehot)
    s = seg.scores_from_confusion(seg.pixel_confusion(TRUTH, PRED, 4), CLASSES, [1, 2, 3])
    assert float(metrics["mean_iou"].result()) == pytest.approx(s["mean_iou"], rel=1e-5)
    assert float(metrics["iou_beta"].result()) == pytest.approx(0.5, rel=1e-5)
    assert float(metrics["accuracy"].result()) == pytest.approx(13 / 16, rel=1e-5)


def test_overlay_paints_each_class_and_leaves_the_background():
    from pipeline import plots

    images = np.full((1, 4, 4, 1), 100, np.uint8)
    out = plots.mask_overlay(images, TRUTH[None], background=0)
    assert out.shape == (1, 4, 4, 3) and out.dtype == np.uint8
    assert (out[0][TRUTH == 0] == 100).all()
    colours = {c: tuple(out[0][np.equal(TRUTH, c)][0]) for c in (1, 2, 3)}
    assert len(set(colours.values())) == 3 and all(len(set(v)) > 1 for v in colours.values())
    assert plots.overlay_legend(CLASSES, 0) == "muon red, alpha blue, beta green"


def test_a_shifted_frame_is_scored_against_its_mask_moved_the_same_way(tmp_path):
    """A pixel-exact model (a 1x1 convolution thresholding brightness) scores mean IoU 1 on every
    shift: the masks must move right and down with their frames."""
    import keras

    from tests.conftest import entry

    inputs = keras.Input((12, 12, 1))
    logits = keras.layers.Conv2D(2, 1, activation="softmax", name="oracle")(inputs)
    model = keras.Model(inputs, logits)
    model.get_layer("oracle").set_weights([np.array([[[[-1.0, 1.0]]]]), np.array([64.0, -64.0])])
    y = np.zeros((4, 12, 12), np.uint8)
    for i in range(4):
        y[i, 1 + i : 5 + i, 2:7] = 1  # an object away from the edges (edge rows repeat when shifted)
    x = (y * 255).astype(np.uint8)[..., None]
    manifest = {"classes": ["background", "object"], "background": "background"}
    p = entry("models", "unet", shifts=[0, 2, 4], min_component=1)
    flat, _ = seg.evaluate_model("oracle", p, model, x, y, manifest, tmp_path)
    assert flat["test_mean_iou"] == 1.0
    assert [flat[f"test_shift_{s}_mean_iou"] for s in (0, 2, 4)] == [1.0, 1.0, 1.0]
