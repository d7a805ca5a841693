"""U-Net for semantic segmentation: a contracting path, an expanding path, skips between them.

Each level is two 3x3 convolutions (batch norm, ReLU); the encoder halves the resolution with max
pooling and doubles the filters; the decoder doubles the resolution, by transposed convolution or
by upsampling then a convolution, and concatenates the encoder's features of the same level, so
fine detail (a one-pixel track) survives the bottleneck. The head is a per-pixel softmax.
"""

from __future__ import annotations

import keras
from keras import layers


def _conv_block(x, filters: int, kernel_size: int, batch_norm: bool, dropout: float, name: str):
    for i in (1, 2):
        # No bias before batch norm: its shift does the same job.
        x = layers.Conv2D(
            filters, kernel_size, padding="same", use_bias=not batch_norm, name=f"{name}_conv{i}"
        )(x)
        if batch_norm:
            # Its statistics for inference are re-estimated over the training split after every epoch
            # (training.PreciseBatchNorm), so the momentum of the moving averages does not matter.
            x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def unet(
    input_shape,
    num_classes: int,
    depth: int = 3,
    filters: int = 16,
    kernel_size: int = 3,
    decoder: str = "transpose",
    batch_norm: bool = True,
    dropout: float = 0.0,
) -> keras.Model:
    """`depth` poolings; level i has filters * 2**i; the input's sides must divide by 2**depth."""
    height, width = input_shape[0], input_shape[1]
    if height % 2**depth or width % 2**depth:
        raise ValueError(f"input {height}x{width} does not divide by 2**depth = {2**depth}")
    if decoder not in ("transpose", "upsample"):
        raise ValueError(f"decoder {decoder!r}; valid: transpose, upsample")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    skips = []
    for level in range(depth):
        x = _conv_block(x, filters * 2**level, kernel_size, batch_norm, 0.0, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
    # Dropout where features are most abstract and the layers widest: the bottleneck and the decoder.
    x = _conv_block(x, filters * 2**depth, kernel_size, batch_norm, dropout, "bottleneck")
    for level in reversed(range(depth)):
        f = filters * 2**level
        if decoder == "transpose":
            x = layers.Conv2DTranspose(f, 2, strides=2, padding="same", name=f"up{level}_transpose")(x)
        else:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}_upsample")(x)
            x = layers.Conv2D(f, kernel_size, padding="same", name=f"up{level}_conv")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = _conv_block(x, f, kernel_size, batch_norm, dropout if level else 0.0, f"up{level}")
    # float32 even under mixed precision, for a stable loss.
    outputs = layers.Conv2D(num_classes, 1, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="unet")
