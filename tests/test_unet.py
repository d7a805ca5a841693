"""The U-Net builder: shapes, skips, decoders, options, and that it learns a mask."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.models.registry import BUILDERS, build
from pipeline.params import ARCHITECTURES, UnetParams, arch_kwargs
from pipeline.tasks import segmentation
from tests.conftest import entry


def test_registered_under_one_name():
    assert BUILDERS["unet"] is not None and ARCHITECTURES["unet"] is UnetParams
    p = entry("models", "unet", dataset="d", depth=2, filters=4, decoder="upsample")
    # Only the builder's own hyperparameters reach it: not the loss or other training keys.
    assert arch_kwargs(p) == {
        "depth": 2,
        "filters": 4,
        "kernel_size": 3,
        "decoder": "upsample",
        "batch_norm": True,
        "dropout": 0.0,
    }


@pytest.mark.parametrize("decoder", ["transpose", "upsample"])
def test_per_pixel_softmax_with_skips(decoder):
    model = build("unet", (32, 32, 1), 4, depth=3, filters=4, decoder=decoder)
    out = model(np.zeros((2, 32, 32, 1), "uint8"))
    assert tuple(out.shape) == (2, 32, 32, 4)
    assert np.allclose(np.asarray(out).sum(axis=-1), 1.0, atol=1e-5)
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.endswith("_concat")] == ["up2_concat", "up1_concat", "up0_concat"]
    kind = keras.layers.Conv2DTranspose if decoder == "transpose" else keras.layers.UpSampling2D
    assert sum(isinstance(layer, kind) for layer in model.layers) == 3
    # Each skip joins the encoder's features of the same resolution: the deepest one at 32 / 2**2.
    concat = model.get_layer("up2_concat")
    assert tuple(concat.output.shape) == (None, 8, 8, 4 * 4 + 4 * 4)
    assert model.get_layer("bottleneck_conv1").output.shape[1:] == (4, 4, 32)


def test_depth_filters_batch_norm_and_dropout_change_the_model():
    base = build("unet", (32, 32, 3), 3, depth=2, filters=8)
    deeper = build("unet", (32, 32, 3), 3, depth=3, filters=8)
    wider = build("unet", (32, 32, 3), 3, depth=2, filters=16)
    assert base.count_params() < deeper.count_params() and base.count_params() < wider.count_params()
    plain = build("unet", (32, 32, 3), 3, depth=2, filters=8, batch_norm=False, dropout=0.3)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in plain.layers) == 2  # bottleneck, up1
    assert model_head_dtype(build("unet", (16, 16, 1), 2, depth=1, filters=2)) == "float32"


def model_head_dtype(model) -> str:
    return model.get_layer("predictions").dtype_policy.compute_dtype


def test_sides_must_divide_by_two_to_the_depth():
    with pytest.raises(ValueError, match="does not divide by 2\\*\\*depth = 16"):
        build("unet", (40, 40, 1), 2, depth=4)


@pytest.mark.slow
def test_learns_a_mask():
    """A few steps on bright squares: the loss falls and the squares are found."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, (16, 16, 16, 1)).astype("uint8")
    y = np.zeros((16, 16, 16), "uint8")
    for i in range(16):
        r, c = rng.integers(0, 12, 2)
        x[i, r : r + 4, c : c + 4] = 220
        y[i, r : r + 4, c : c + 4] = 1
    model = build("unet", (16, 16, 1), 2, depth=2, filters=8)
    loss = segmentation.SegmentationLoss(2, {"cross_entropy": 1.0, "dice": 1.0})
    model.compile(keras.optimizers.Adam(0.01), loss, metrics=segmentation.epoch_metrics(["bg", "sq"], [1]))
    history = model.fit(x, y, batch_size=8, epochs=25, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["mean_iou"][-1] > 0.8
