"""Image classifiers of the lecture: a single trainable filter, a feed-forward net and a CNN.

Binary tasks end in one sigmoid unit, others in a softmax over the classes; pixels come in as
0..255 and are rescaled inside the model, so stored data stays uint8.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from pipeline.errors import UserError

# Convolution, pooling and global poolings of each number of spatial dimensions.
CONV_LAYERS = {
    1: (layers.Conv1D, layers.MaxPooling1D, layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D),
    2: (layers.Conv2D, layers.MaxPooling2D, layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D),
    3: (layers.Conv3D, layers.MaxPooling3D, layers.GlobalAveragePooling3D, layers.GlobalMaxPooling3D),
}
DIMS_AXES = {1: "length, channels", 2: "height, width, channels", 3: "frames, height, width, channels"}


def classifier_head(x, num_classes: int):
    """The output layer; float32 even under mixed precision, for a stable loss."""
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", dtype="float32", name="predictions")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)


def _inputs(input_shape):
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    return inputs, layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)


def filter_net(input_shape, num_classes: int, kernel_size: int = 3) -> keras.Model:
    """The lecture's trainable filter: one k x k filter, global max pooling, one dense unit."""
    if len(input_shape) != 3:
        raise UserError(
            f"filter_net scans images (height, width, channels); the dataset's rows have shape "
            f"{tuple(input_shape)}: use a cnn with dims: {len(input_shape) - 1} instead"
        )
    inputs, x = _inputs(input_shape)
    x = layers.Conv2D(1, kernel_size, padding="valid", name="filter")(x)
    x = layers.GlobalMaxPooling2D(name="max_response")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="filter_net")


def mlp(input_shape, num_classes: int, hidden=(128, 64), dropout: float = 0.0) -> keras.Model:
    """Feed-forward baseline on flattened pixels: no weight sharing, so no translation invariance."""
    inputs, x = _inputs(input_shape)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(hidden):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="mlp")


def collapsed_block(input_shape, filters, strides: int, padding: str, pool_size: int) -> str | None:
    """A warning's text when a `same`-padded cnn shrinks its map to one pixel before its last blocks.

    `same` convolution and pooling never fail on a small map, so such a cnn builds and trains; but
    from that block on each kernel sees a single position. None when every block sees more.
    """
    if padding != "same":
        return None  # `valid` fails at build time where the map gets too small
    sizes = [int(n) for n in input_shape[:-1]]
    shown = "x".join(map(str, sizes))
    for i in range(len(filters)):
        if i and all(n == 1 for n in sizes):
            ones = "x".join("1" * len(sizes)) if len(sizes) > 1 else "length-1"
            later = f" (and the {len(filters) - i - 1} after it)" if i < len(filters) - 1 else ""
            return (
                f"block {i + 1} of {len(filters)} (block{i}_conv){later} gets a {ones} map: the {i} "
                f"block(s) before it take {shown} down to {ones} (strides {strides}, pool_size {pool_size}), "
                "so its kernel sees one position; use fewer blocks, a smaller pool_size or larger inputs"
            )
        sizes = [math.ceil(n / strides) for n in sizes]
        if pool_size > 1:
            sizes = [math.ceil(n / pool_size) for n in sizes]
    return None


def cnn(
    input_shape,
    num_classes: int,
    filters=(16, 32, 64),
    kernel_size: int = 3,
    strides: int = 1,
    padding: str = "same",
    pool_size: int = 2,
    batch_norm: bool = True,
    dropout: float = 0.0,
    head: str = "global_avg",
    dense=(),
    dims: int = 2,
) -> keras.Model:
    """Blocks of Conv -> (BatchNorm) -> ReLU -> MaxPool, then a pooled or flattened dense head.

    `dims` picks 1D (sequences: length x channels), 2D (images) or 3D (videos or volumes:
    frames x height x width x channels) convolution and pooling.
    """
    if dims not in CONV_LAYERS:
        raise ValueError(f"dims must be one of {sorted(CONV_LAYERS)}, got {dims!r}")
    if len(input_shape) != dims + 1:
        raise UserError(
            f"models.*.dims: a {dims}D cnn takes inputs of {dims + 1} axes ({DIMS_AXES[dims]}), "
            f"but the dataset's rows have shape {tuple(input_shape)}; set dims: {len(input_shape) - 1}"
        )
    conv, pool, global_avg, global_max = CONV_LAYERS[dims]
    inputs, x = _inputs(input_shape)
    for i, f in enumerate(filters):
        x = conv(
            f, kernel_size, strides=strides, padding=padding, use_bias=not batch_norm, name=f"block{i}_conv"
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.Activation("relu", name=f"block{i}_relu")(x)
        if pool_size > 1:
            x = pool(pool_size, padding="same", name=f"block{i}_pool")(x)
    if head == "global_avg":
        x = global_avg(name="pool")(x)
    elif head == "global_max":
        x = global_max(name="pool")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cnn")
