"""Feature maps of each convolution block, drawn for a few test images."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.lecture import feature_maps
from pipeline.models.registry import build


def test_block_outputs_are_the_activations_after_each_convolution():
    cnn = build("cnn", (16, 16, 1), 3, filters=[4, 8, 8], batch_norm=True)
    assert feature_maps.block_outputs(cnn) == ["block0_relu", "block1_relu", "block2_relu"]
    # No activation after the one filter: the convolution itself ends the block.
    assert feature_maps.block_outputs(build("filter_net", (16, 16, 1), 2)) == ["filter"]


def test_activations_and_their_images():
    cnn = build("cnn", (16, 16, 1), 3, filters=[4, 8], batch_norm=False)
    x = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 1)).astype("uint8")
    acts = feature_maps.activations(cnn, x)
    assert acts["block0_relu"].shape == (2, 16, 16, 4)
    assert acts["block1_relu"].shape == (2, 8, 8, 8)
    assert all(a.min() >= 0 for a in acts.values())  # after ReLU
    maps = acts["block0_relu"][0].copy()
    # The initialisation is not seeded here (it follows whatever ran before in the process): any of
    # the four maps may be dead after the ReLU, so the stretched one is one that fires.
    fires = int(np.argmax(maps.max(axis=(0, 1)) - maps.min(axis=(0, 1))))
    dead = (fires + 1) % 4
    maps[..., dead] = 0.0  # a map that never fires
    images = feature_maps.to_uint8(maps)
    assert images.shape == (4, 16, 16) and images.dtype == np.uint8
    assert images[fires].min() == 0 and images[fires].max() == 255  # each map stretched over its own range
    assert images[dead].max() == 0


def test_examples_take_each_class_in_turn():
    labels = np.array([2, 2, 0, 1, 0, 2])
    assert feature_maps.pick_examples(labels, 3) == [2, 3, 0]
    assert feature_maps.pick_examples(labels, 5) == [2, 3, 0, 4, 1]


def test_figures_one_per_image(tmp_path):
    cnn = build("cnn", (16, 16, 1), 2, filters=[4, 8], batch_norm=False)
    x = np.random.default_rng(1).integers(0, 255, (6, 16, 16, 1)).astype("uint8")
    y = np.array([0, 1, 0, 1, 0, 1])
    paths = feature_maps.feature_map_figures(cnn, x, y, ["a", "b"], tmp_path, count=3, channels=2)
    assert [p.name for p in paths] == ["feature_maps_0.png", "feature_maps_1.png", "feature_maps_2.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    with pytest.raises(ValueError, match="2D images"):
        spectra_cnn = build("cnn", (32, 1), 2, filters=[4], dims=1)
        feature_maps.feature_map_figures(
            spectra_cnn, np.zeros((2, 32, 1)), np.array([0, 1]), ["a", "b"], tmp_path
        )


def test_lecture_feature_model_must_be_a_2d_cnn():
    from conftest import project_params

    from pipeline import params
    from pipeline.errors import UserError

    raw = project_params()
    raw["lecture"]["feature_model"] = "spectra_cnn"
    with pytest.raises(
        UserError, match=r"lecture\.feature_model: 'spectra_cnn' is not a 2D cnn.*valid: cnn, frame_cnn"
    ):
        params.parse(raw)
