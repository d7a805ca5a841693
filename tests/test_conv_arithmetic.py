"""Output sizes and receptive fields, checked against what Keras layers really produce."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml
from keras import layers

from pipeline.lecture.conv_arithmetic import format_table, layer_shapes, output_size


def test_lecture_example_256_to_125():
    """Conv (k3, s2, p1) then max pooling (k4, s1, p0): 256 -> 128 -> 125, by formula and in Keras."""
    after_conv = output_size(256, kernel=3, stride=2, padding=1)
    assert after_conv == 128
    assert output_size(after_conv, kernel=4, stride=1, padding=0) == 125
    x = np.zeros((1, 256, 256, 1), "float32")
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(1, 3, strides=2, padding="valid")(x)
    x = layers.MaxPooling2D(4, strides=1, padding="valid")(x)
    assert tuple(x.shape) == (1, 125, 125, 1)


def _keras_conv_length(size, kernel, stride, padding, dilation, pool: bool) -> int:
    x = np.zeros((1, size, 1), "float32")
    if isinstance(padding, int):
        x, padding = layers.ZeroPadding1D(padding)(x), "valid"
    if pool:
        y = layers.MaxPooling1D(kernel, strides=stride, padding=padding)(x)
    else:
        y = layers.Conv1D(1, kernel, strides=stride, padding=padding, dilation_rate=dilation)(x)
    return int(y.shape[1])


def test_output_size_matches_keras_in_many_random_cases():
    rng = np.random.default_rng(7)
    checked = 0
    while checked < 150:
        pool = bool(rng.integers(2))
        size, kernel, stride = int(rng.integers(1, 40)), int(rng.integers(1, 8)), int(rng.integers(1, 5))
        padding = ["valid", "same", int(rng.integers(0, 4))][int(rng.integers(3))]
        # Keras convolutions take a dilation or a stride above 1, not both; pooling has no dilation.
        dilation = 1 if pool or stride > 1 else int(rng.integers(1, 4))
        span = dilation * (kernel - 1) + 1
        if padding != "same" and size + 2 * (padding if isinstance(padding, int) else 0) < span:
            with pytest.raises(ValueError, match="does not fit"):
                output_size(size, kernel, stride, padding, dilation)
            continue
        expected = _keras_conv_length(size, kernel, stride, padding, dilation, pool)
        assert output_size(size, kernel, stride, padding, dilation) == expected, (
            size,
            kernel,
            stride,
            padding,
            dilation,
            pool,
        )
        checked += 1


def test_output_size_per_axis_in_2d_and_3d():
    rng = np.random.default_rng(3)
    for _ in range(10):
        dims = int(rng.integers(2, 4))
        size = tuple(int(s) for s in rng.integers(6, 20, dims))
        kernel, stride = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        padding = ["valid", "same"][int(rng.integers(2))]
        conv = (layers.Conv2D if dims == 2 else layers.Conv3D)(1, kernel, strides=stride, padding=padding)
        out = conv(np.zeros((1, *size, 1), "float32"))
        assert tuple(out.shape[1:-1]) == tuple(output_size(s, kernel, stride, padding) for s in size)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="padding must be"):
        output_size(10, 3, padding="full")
    with pytest.raises(ValueError, match=">= 1"):
        output_size(10, 0)


def test_layer_shapes_of_the_lecture_example():
    inputs = keras.Input((256, 256, 1))
    x = layers.ZeroPadding2D(1, name="pad")(inputs)
    x = layers.Conv2D(4, 3, strides=2, name="conv")(x)
    x = layers.MaxPooling2D(4, strides=1, name="pool")(x)
    rows = {r.name: r for r in layer_shapes(keras.Model(inputs, x))}
    assert rows["pool"].output_shape == (125, 125, 4)
    assert rows["conv"].params == 3 * 3 * 4 + 4
    assert rows["conv"].field.size == (3, 3) and rows["conv"].field.jump == (2, 2)
    # Four neighbouring conv outputs, two input pixels apart, seen by one pooled unit: 3 + 3 x 2.
    assert rows["pool"].field.size == (9, 9)
    table = format_table(list(rows.values()))
    assert "125x125x4" in table and "9x9" in table


def test_receptive_field_is_what_the_network_really_sees():
    """With positive weights and no bias, an output unit responds to exactly the input pixels in its field."""
    from pipeline.models.registry import build

    size = 24
    model = build("cnn", (size, size, 1), 3, filters=[2, 2], kernel_size=3, pool_size=2, batch_norm=False)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(
                [np.ones_like(w) if w.ndim > 1 else np.zeros_like(w) for w in layer.get_weights()]
            )
    rows = {r.name: r for r in layer_shapes(model)}
    probe = keras.Model(model.input, model.get_layer("block1_relu").output)
    # One image per input pixel, lit alone: which of them reach the central output unit?
    deltas = np.eye(size * size, dtype="float32").reshape(-1, size, size, 1) * 255
    out = np.asarray(probe.predict(deltas, verbose=0))
    centre = out.shape[1] // 2
    seen = (out[:, centre, centre, 0] > 0).reshape(size, size)
    rr, cc = np.nonzero(seen)
    extent = (rr.max() - rr.min() + 1, cc.max() - cc.min() + 1)
    assert extent == rows["block1_relu"].field.size == (8, 8)


def test_shapes_command_prints_every_layer(tmp_path, monkeypatch, capsys):
    """`python -m pipeline.lecture.layer_table <model>` before its dataset is prepared: shape from params."""
    from conftest import project_params

    from pipeline.errors import run_cli
    from pipeline.lecture import layer_table as shapes

    params = project_params()
    params["datasets"]["shapes"]["image_size"] = 32
    params["models"]["cnn"].update(
        dataset="shapes", filters=[16, 32, 64], kernel_size=3, pool_size=2, batch_norm=True, head="global_avg"
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["shapes", "cnn"])
    run_cli(shapes.main)
    out = capsys.readouterr().out
    assert "not prepared yet" in out
    assert "block2_pool" in out and "4x4x64" in out and "22x22" in out
    assert "total parameters: 23,957" in out

    monkeypatch.setattr("sys.argv", ["shapes", "cnnn"])
    with pytest.raises(SystemExit) as stop:
        run_cli(shapes.main)
    assert stop.value.code == 2
    assert "models.cnnn: no such entry" in capsys.readouterr().err
