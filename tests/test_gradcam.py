"""What the network looks at: the pointing measure, Grad-CAM on models whose answer is known, the files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data import shapes

keras = pytest.importorskip("keras")

from pipeline.models.classifiers import cnn, filter_net, mlp  # noqa: E402
from pipeline.tasks import gradcam  # noqa: E402


def test_pointing_counts_a_peak_on_or_within_two_pixels_of_the_figure():
    figure = np.zeros((3, 10, 10), np.uint8)
    figure[:, 5, 5] = 1
    figure[2] = 0  # no figure: not counted
    maps = np.zeros((3, 10, 10), np.float32)
    maps[0, 7, 5] = 1.0  # two pixels below: a hit
    maps[1, 8, 5] = 1.0  # three pixels below: a miss
    maps[2, 0, 0] = 1.0
    hits = gradcam.pointing_hits(maps, figure)
    assert hits[0] == 1.0 and hits[1] == 0.0 and np.isnan(hits[2])
    assert gradcam.peaks(maps).tolist() == [[7, 5], [8, 5], [0, 0]]


def test_a_peak_inside_a_ring_points_at_the_ring():
    ring = np.zeros((1, 21, 21), np.uint8)
    yy, xx = np.mgrid[:21, :21]
    ring[0][np.abs(np.hypot(yy - 10, xx - 10) - 7) < 0.8] = 1  # a one-pixel circle of radius 7
    centre = np.zeros((1, 21, 21))
    centre[0, 10, 10] = 1.0  # 7 pixels from the stroke, inside the figure
    outside = np.zeros((1, 21, 21))
    outside[0, 0, 0] = 1.0  # a corner: far outside
    assert gradcam.pointing_hits(centre, ring).tolist() == [1.0]
    assert gradcam.pointing_hits(outside, ring).tolist() == [0.0]


def test_a_peak_inside_a_nicked_ring_points_at_the_ring():
    """shapes cuts one-pixel nicks into a ring's '/' arc; the ring's middle still counts as the ring."""
    from scipy import ndimage

    for seed in range(50):  # the first ring whose nick leaves it open to plain hole filling
        _, figure = shapes.render_with_figure("ring", np.random.default_rng([seed, 3]), 32, max_stroke=1)
        if not (ndimage.binary_fill_holes(figure) & ~figure.astype(bool)).any():
            break
    else:
        pytest.fail("no nicked ring among 50 draws")
    rows, cols = np.nonzero(figure)
    centre = np.zeros((1, 32, 32))
    centre[0, round(rows.mean()), round(cols.mean())] = 1.0  # the ring's middle
    assert ndimage.distance_transform_edt(figure == 0)[round(rows.mean()), round(cols.mean())] > 2
    assert gradcam.pointing_hits(centre, figure[None]).tolist() == [1.0]
    area = gradcam.figure_area(figure)
    assert not area[figure == 0].all() and (area >= figure.astype(bool)).all()  # holes only, not the outside


def test_shapes_know_where_the_figure_is_and_draw_the_same_image():
    for kind in ("angle", "ring", "noise"):
        image, figure = shapes.render_with_figure(kind, np.random.default_rng([1, 2]), 32)
        assert np.array_equal(image, shapes.render(kind, np.random.default_rng([1, 2]), 32))
        assert figure.any() == (kind != "noise")
        if (
            kind != "noise"
        ):  # figure pixels are drawn at >= 0.6 of full intensity, the background below 0.15 + noise
            assert image[figure > 0].mean() > image[figure == 0].mean() + 80


def _bright_spot_cnn() -> keras.Model:
    """A cnn whose one filter passes brightness and whose output says 'class 1' the brighter the image."""
    model = cnn((12, 12, 1), 2, filters=(1,), kernel_size=1, pool_size=1, batch_norm=False, dropout=0.0)
    model.get_layer("block0_conv").set_weights([np.ones((1, 1, 1, 1), "float32"), np.zeros(1, "float32")])
    model.get_layer("predictions").set_weights([np.ones((1, 1), "float32"), np.zeros(1, "float32")])
    return model


def test_gradcam_peaks_on_the_bright_spot_that_makes_the_answer():
    model = _bright_spot_cnn()
    x = np.zeros((2, 12, 12, 1), "float32")
    x[0, 2, 3] = x[1, 9, 7] = 255.0
    maps, method = gradcam.heatmaps(model, x, np.array([1, 1]))
    assert method == "gradcam" and maps.shape == (2, 12, 12)
    assert gradcam.peaks(maps).tolist() == [[2, 3], [9, 7]]
    # For class 0 the score falls with brightness: a negative weight, and the ReLU leaves no map.
    maps0, _ = gradcam.heatmaps(model, x, np.array([0, 0]))
    assert np.allclose(maps0, 0.0)


def test_filter_net_map_is_its_response_with_the_peak_at_the_window_centre():
    model = filter_net((12, 12, 1), 2, kernel_size=3)
    model.get_layer("filter").set_weights([np.ones((3, 3, 1, 1), "float32"), np.zeros(1, "float32")])
    x = np.zeros((1, 12, 12, 1), "float32")
    x[0, 4:7, 6:9] = 255.0  # a 3x3 square centred on (5, 7)
    maps, method = gradcam.heatmaps(model, x, np.array([1]))
    assert method == "filter_response" and gradcam.feature_layer(model)[1] == "filter"
    assert gradcam.peaks(maps).tolist() == [[5, 7]]


def test_mlp_gets_a_saliency_map():
    model = mlp((8, 8, 1), 3, hidden=(4,))
    maps, method = gradcam.heatmaps(
        model, np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 1)), np.array([0, 2])
    )
    assert method == "saliency" and maps.shape == (2, 8, 8) and (maps >= 0).all() and maps.any()


def test_explain_writes_the_figure_and_the_pointing_details(tmp_path):
    model = _bright_spot_cnn()
    x = np.zeros((4, 12, 12, 1), "float32")
    figures = np.zeros((4, 12, 12), np.uint8)
    for i, (r, c) in enumerate([(2, 3), (9, 7), (5, 5), (1, 10)]):
        x[i, r, c] = 255.0
        figures[i, r, c] = 1
    figures[3] = 0
    figures[3, 10, 1] = 1  # the spot is not the figure: a miss
    y = np.array([1, 1, 1, 1])
    pred = np.array([1, 1, 0, 1])  # one mistake: not counted
    details = gradcam.explain("toy", model, x, y, pred, ["dark", "bright"], figures, tmp_path)
    assert (tmp_path / "gradcam.png").stat().st_size > 1000
    assert details["pointing_images"] == 3 and details["pointing_accuracy"] == pytest.approx(2 / 3)
    assert details["method"] == "gradcam on block0_relu" and details["map_cell_px"] == 1.0
    json.dumps(details)  # goes into details.json as it is


def test_the_map_cell_is_the_image_side_over_the_last_blocks_side():
    assert gradcam.map_cell_px(cnn((32, 32, 1), 5, filters=(16, 32))) == 2.0
    assert gradcam.map_cell_px(cnn((32, 32, 1), 5, filters=(16, 32, 64))) == 4.0
    assert gradcam.map_cell_px(filter_net((32, 32, 1), 2)) is None
    assert gradcam.map_cell_px(mlp((8, 8, 1), 3)) is None


def test_the_default_cnns_map_is_as_fine_as_the_pointing_tolerance():
    """The issue's measure asks the default cnn's Grad-CAM peak within 2 pixels of the figure. With
    three blocks (an 8x8 map of 4-pixel cells) its peaks missed angles by a cell, and the pointing
    accuracy over five seeds read 0.75 to 1.00; two blocks (16x16, 2-pixel cells) read 0.98 to 1.00
    (reports/models/cnn/NOTES.md). A default whose map is coarser than the tolerance fails here."""
    from pipeline import params
    from pipeline.tasks.model import build_model
    from tests.conftest import ROOT

    p = params.load(ROOT / "params.yaml")
    shapes_ = p.datasets[p.model("cnn").dataset]  # the drawn figures: one grey channel
    manifest = {"classes": shapes_.classes, "shape": [shapes_.image_size, shapes_.image_size, 1]}
    model = build_model(p.model("cnn"), manifest, None, "cnn")
    assert gradcam.map_cell_px(model) <= gradcam.POINTING_TOLERANCE
