"""Image classifiers of the lecture: a single trainable filter, a feed-forward net and a CNN.

Binary tasks end in one sigmoid unit, others in a softmax over the classes; pixels come in as
0..255 and are rescaled inside the model, so stored data stays uint8.
"""

from __future__ import annotations

import keras
from keras import layers


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
) -> keras.Model:
    """Blocks of Conv2D -> (BatchNorm) -> ReLU -> MaxPool, then a pooled or flattened dense head."""
    inputs, x = _inputs(input_shape)
    for i, f in enumerate(filters):
        x = layers.Conv2D(
            f, kernel_size, strides=strides, padding=padding, use_bias=not batch_norm, name=f"block{i}_conv"
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.Activation("relu", name=f"block{i}_relu")(x)
        if pool_size > 1:
            x = layers.MaxPooling2D(pool_size, padding="same", name=f"block{i}_pool")(x)
    if head == "global_avg":
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    elif head == "global_max":
        x = layers.GlobalMaxPooling2D(name="pool")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate(dense):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cnn")
