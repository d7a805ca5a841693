"""Model builders: output heads, the lecture's single filter, rescaling inside the model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.models.registry import BUILDERS, build
from pipeline.params import ARCHITECTURES, arch_kwargs, parse
from tests.conftest import project_params, tiny

CLASSIFIERS = ("filter_net", "mlp", "cnn")


def test_registry_and_schema_name_the_same_architectures():
    assert set(BUILDERS) == set(ARCHITECTURES) and set(CLASSIFIERS) <= set(BUILDERS)


@pytest.mark.parametrize("architecture", CLASSIFIERS)
@pytest.mark.parametrize("channels", [1, 3])
def test_binary_ends_in_one_sigmoid_and_multiclass_in_a_softmax(architecture, channels):
    binary = build(architecture, (16, 16, channels), 2)
    assert binary.output_shape == (None, 1)
    assert binary.get_layer("predictions").activation.__name__ == "sigmoid"
    multi = build(architecture, (16, 16, channels), 5)
    assert multi.output_shape == (None, 5)
    assert multi.get_layer("predictions").activation.__name__ == "softmax"
    out = np.asarray(multi(np.zeros((2, 16, 16, channels), "uint8")))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert multi.get_layer("predictions").dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize("architecture", CLASSIFIERS)
def test_rescaling_by_1_over_255_is_the_first_layer(architecture):
    model = build(architecture, (8, 8, 1), 3)
    first = model.layers[1]
    assert isinstance(first, keras.layers.Rescaling) and first.name == "rescale"
    assert first.scale == pytest.approx(1 / 255)


def test_filter_net_is_one_filter_max_pooled_into_one_unit():
    model = build("filter_net", (12, 12, 1), 2, kernel_size=3)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 1 and convs[0].filters == 1
    assert convs[0].kernel.shape == (3, 3, 1, 1)
    assert isinstance(model.get_layer("max_response"), keras.layers.GlobalMaxPooling2D)
    # By hand: a filter of ones on a 255 image gives 9 * 1.0 after rescaling; the unit passes it on.
    convs[0].set_weights([np.ones((3, 3, 1, 1)), np.zeros(1)])
    model.get_layer("predictions").set_weights([np.ones((1, 1)), np.zeros(1)])
    x = np.zeros((2, 12, 12, 1), "uint8")
    x[0, 4:7, 4:7] = 255  # one bright 3x3 patch: the maximum response is 9
    x[1, 0, 0] = 255  # one bright corner pixel: the maximum response is 1
    out = np.asarray(model(x))[:, 0]
    np.testing.assert_allclose(out, 1 / (1 + np.exp([-9.0, -1.0])), rtol=1e-5)


def test_filter_net_kernel_size_and_channels():
    model = build("filter_net", (16, 16, 3), 2, kernel_size=7)
    assert model.get_layer("filter").kernel.shape == (7, 7, 3, 1)
    assert model.count_params() == 7 * 7 * 3 + 1 + 2


def test_mlp_layers_follow_hidden_and_dropout():
    model = build("mlp", (8, 8, 1), 4, hidden=[32, 16, 8], dropout=0.5)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [32, 16, 8, 4]
    assert sum(isinstance(layer, keras.layers.Dropout) for layer in model.layers) == 3
    assert not any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    no_dropout = build("mlp", (8, 8, 1), 4, hidden=[8], dropout=0.0)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in no_dropout.layers)


def test_cnn_blocks_and_heads():
    model = build("cnn", (32, 32, 1), 5, filters=[4, 8, 16], batch_norm=True)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [4, 8, 16]
    assert all(not c.use_bias for c in convs)  # batch norm's shift replaces the bias
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 3
    assert model.get_layer("block2_pool").output.shape == (None, 4, 4, 16)  # 32 / 2 / 2 / 2

    plain = build("cnn", (32, 32, 1), 5, filters=[4], batch_norm=False, pool_size=1, head="flatten")
    assert plain.get_layer("block0_conv").use_bias
    assert plain.get_layer("flatten").output.shape == (None, 32 * 32 * 4)

    valid = build("cnn", (16, 16, 1), 3, filters=[4], kernel_size=5, strides=2, padding="valid", pool_size=1)
    assert valid.get_layer("block0_conv").output.shape == (None, 6, 6, 4)  # (16 - 5) // 2 + 1

    head = build("cnn", (16, 16, 1), 3, filters=[4], head="global_max", dense=[12, 6], dropout=0.3)
    assert isinstance(head.get_layer("pool"), keras.layers.GlobalMaxPooling2D)
    assert [head.get_layer(f"dense_{i}").units for i in range(2)] == [12, 6]
    assert head.get_layer("dropout").rate == 0.3


def test_every_model_of_the_project_params_builds():
    params = parse(tiny(project_params()))
    for name, p in params.models.items():
        ds = params.datasets[p.dataset]
        if p.architecture not in CLASSIFIERS or ds.source not in ("shapes", "folder"):
            continue  # segmentation, sequences and videos have their own tests
        num_classes = 2 if getattr(ds, "positive", None) else len(ds.classes)
        model = build(p.architecture, (ds.image_size, ds.image_size, 1), num_classes, **arch_kwargs(p))
        assert model.output_shape == (None, 1 if num_classes == 2 else num_classes), name
