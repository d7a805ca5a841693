"""EfficientNet-Lite0 in Keras, layer for layer as the EfficientNet-PyTorch checkpoint names it.

Lite0 is EfficientNet-B0 made for mobile accelerators: no squeeze-excitation, ReLU6 instead of
swish, and a fixed stem and head. Layer names are the torch module paths with '.' turned into
'_' (`_blocks.3._expand_conv` -> `blocks_3_expand_conv`), so the weight import is by name.
Pixels come in as 0..255 RGB; the scaling the weights were trained with happens inside.
"""

from __future__ import annotations

import keras
from keras import layers

# Per stage: repeats, kernel, stride of the first block, expansion ratio, output channels.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3  # the TensorFlow original's; torch's default 1e-5 would shift every activation
# EfficientNet-Lite's input scaling: (x - 127) / 128, so 0..255 maps to about -1..1.
INPUT_MEAN, INPUT_SCALE = 127.0, 128.0
FEATURES_LAYER = "head_relu"  # last layer before pooling: what a new head builds on


def keras_name(torch_module: str) -> str:
    """`_blocks.3._bn0` -> `blocks_3_bn0`: the Keras layer that holds that torch module's weights."""
    return "_".join(part.strip("_") for part in torch_module.split("."))


def _conv_bn(x, filters: int, kernel: int, stride: int, conv: str, bn: str, relu: str | None):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=conv)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn)(x)
    return layers.ReLU(6.0, name=relu)(x) if relu else x


def mbconv(x, index: int, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
    """Inverted residual: 1x1 expansion, depthwise conv, 1x1 linear projection, identity skip."""
    p = f"blocks_{index}"
    inputs = x
    if expand != 1:
        x = _conv_bn(x, in_ch * expand, 1, 1, f"{p}_expand_conv", f"{p}_bn0", f"{p}_expand_relu")
    x = layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{p}_depthwise_conv"
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{p}_bn1")(x)
    x = layers.ReLU(6.0, name=f"{p}_depthwise_relu")(x)
    x = layers.Conv2D(out_ch, 1, padding="same", use_bias=False, name=f"{p}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{p}_bn2")(x)
    if stride == 1 and in_ch == out_ch:
        x = layers.Add(name=f"{p}_add")([x, inputs])
    return x


def efficientnet_lite0(
    input_shape=(224, 224, 3), include_top: bool = True, classes: int = 1000, dropout: float = 0.2
) -> keras.Model:
    """The network on 0..255 RGB input; with `include_top`, softmax over the ImageNet classes."""
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Rescaling(1.0 / INPUT_SCALE, offset=-INPUT_MEAN / INPUT_SCALE, name="preprocess")(inputs)
    x = _conv_bn(x, STEM_CHANNELS, 3, 2, "conv_stem", "bn0", "stem_relu")
    channels, index = STEM_CHANNELS, 0
    for repeats, kernel, stride, expand, out_ch in LITE0_STAGES:
        for r in range(repeats):
            x = mbconv(x, index, channels, out_ch, kernel, stride if r == 0 else 1, expand)
            channels, index = out_ch, index + 1
    x = _conv_bn(x, HEAD_CHANNELS, 1, 1, "conv_head", "bn1", FEATURES_LAYER)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation="softmax", dtype="float32", name="fc")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")
