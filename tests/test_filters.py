"""The lecture's hand-made filter: its worked example, that it finds '/' strokes, and the filter report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import shapes
from pipeline.lecture import filters

# The lecture's worked example uses two neighbourhoods (pixel values 0..1):
# a '/' stroke of 0.9 on black matches the filter: 3 x 0.9 x 0.9 = 2.43;
MATCHING = np.array([[0.0, 0.0, 0.9], [0.0, 0.9, 0.0], [0.9, 0.0, 0.0]])
# the filter's own mirror image, a '\\' of 0.9 on a 0.1 background, scores
# 0.9 x 0.9 (centre) + 4 x 0.9 x 0.1 (the other diagonal cells) + 4 x 0.1 x 0.1 = 1.21.
MIRRORED = np.array([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9]])


def test_worked_example_of_the_lecture():
    # 'valid' on a 3x3 neighbourhood: one output value.
    assert filters.conv2d(MATCHING, filters.ANGLE_FILTER).shape == (1, 1)
    assert filters.conv2d(MATCHING, filters.ANGLE_FILTER)[0, 0] == pytest.approx(2.43)
    assert filters.conv2d(MIRRORED, filters.ANGLE_FILTER)[0, 0] == pytest.approx(1.21)
    # The same two numbers on one background each: the lecture mixed the two (2.49 vs 1.21, 2.43 vs 0.99).
    assert filters.conv2d(filters.ANGLE_FILTER, filters.ANGLE_FILTER)[0, 0] == pytest.approx(2.49)
    assert filters.conv2d(MATCHING[:, ::-1], filters.ANGLE_FILTER)[0, 0] == pytest.approx(0.99)


def test_conv2d_is_what_keras_computes():
    import keras

    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 9, 7))
    kernel = rng.normal(size=(3, 4))
    ours = filters.conv2d(images, kernel)
    theirs = keras.ops.conv(images[..., None], kernel[:, :, None, None], padding="valid")
    assert ours.shape == (3, 7, 4)
    np.testing.assert_allclose(ours, np.asarray(theirs)[..., 0], rtol=1e-5, atol=1e-5)


def _stroke_image(step: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros((16, 16), np.float32)
    start = 12 if step == shapes.SLASH else 2
    shapes._stroke(canvas, start, 2, step, 10, 1, 1.0)
    return (canvas * 255).astype(np.uint8)


def test_filter_finds_the_slash_the_shapes_data_draws():
    """A '/' stroke of full intensity gives the largest response, 3 x 0.9; any other direction much less."""
    slash = filters.max_response(_stroke_image(shapes.SLASH)[None])[0]
    others = [filters.max_response(_stroke_image(s)[None])[0] for s in (shapes.BACKSLASH, shapes.HORIZONTAL)]
    assert slash == pytest.approx(2.7)
    assert max(others) < 0.5 * slash


@pytest.fixture
def angle_data(tmp_path):
    from pipeline.data.prepare import prepare
    from tests.conftest import entry

    ds = entry("datasets", "angle_vs_rest", per_class=100, image_size=24)
    prepare("angle_vs_rest", ds, seed=1, out_dir=tmp_path / "prepared", progress=False)
    return tmp_path / "prepared"


def test_filter_report_scores_both_filters(angle_data, tmp_path):
    import keras

    from pipeline.data.arrays import load_split
    from pipeline.models.registry import build

    keras.utils.set_random_seed(0)
    model = build("filter_net", (24, 24, 1), 2, kernel_size=5)
    model_file = tmp_path / "model.keras"
    model.save(model_file)
    out = tmp_path / "lecture"
    out.mkdir()

    summary = filters.filter_report(angle_data, model_file, out, "filter_net")

    assert (out / "filters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["positive"] == "angle"
    # The hand-made filter detects angles well above chance on the shapes data (about 0.75 in full).
    assert summary["hand_made_auc"] > 0.65
    assert np.asarray(summary["learned_kernel"]).shape == (5, 5)
    json.dumps(summary)  # the stage writes it as filters.json
    # The learned score is exactly the model's own max_response layer output.
    x, _ = load_split(angle_data, "test")
    probe = keras.Model(model.input, model.get_layer("max_response").output)
    kernel, bias = filters.learned_filter(model)
    np.testing.assert_allclose(
        filters.max_response(x, kernel) + bias, np.asarray(probe(np.asarray(x)))[:, 0], rtol=1e-4, atol=1e-4
    )


def test_lecture_names_a_filter_net():
    import yaml

    from pipeline import params
    from pipeline.errors import UserError

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["lecture"]["filter_model"] = "mlp"
    with pytest.raises(
        UserError, match=r"lecture\.filter_model: 'mlp' is not a filter_net.*valid: filter_net"
    ):
        params.parse(raw)
    raw["lecture"]["filter_model"] = None
    assert params.parse(raw).lecture.filter_model is None
