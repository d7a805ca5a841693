"""Transfer learning: an ImageNet backbone with a new head.

The model takes the dataset's uint8 images as they are: grayscale is repeated into RGB, the
image is resized to the backbone's `input_size`, the backbone's own preprocessing is applied,
and the backbone (a nested model named `backbone`) feeds pooling, dropout and a new classifier.

A pretrained backbone's BatchNorm layers stay in inference mode in both phases, keeping their
ImageNet statistics (a few hundred images would otherwise overwrite them): they are never made
trainable, because in Keras 3 a frozen BatchNorm always runs in inference mode, whereas the
outer model's training=True overrides a nested call's training=False (keras-team/keras#20285).
The backbone comes back frozen, ready for phase 1. With `weights: null` nothing is pretrained,
so nothing is frozen and BatchNorm trains normally.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers

from pipeline.errors import UserError, choices_hint
from pipeline.models import efficientnet_lite
from pipeline.models.classifiers import classifier_head
from pipeline.models.weights_import import DEFAULT_WEIGHTS_DIR, LITE0_WEIGHTS_FILE
from pipeline.params import BACKBONES

BACKBONE = "backbone"  # the nested model's name, by which training finds it
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # ResNet50's ImageNet preprocessing
SCRATCH_BN_MOMENTUM = 0.5  # BatchNorm moving-average momentum of a backbone trained from scratch


def _keras_app(name: str):
    """Constructor and the preprocessing it expects outside itself ('none' when built in)."""
    apps = keras.applications
    return {
        "mobilenet_v2": (apps.MobileNetV2, "tf"),
        "mobilenet_v3_small": (apps.MobileNetV3Small, "none"),
        "efficientnet_b0": (apps.EfficientNetB0, "none"),
        "resnet50": (apps.ResNet50, "caffe"),
    }[name]


def build_backbone(name: str, input_size: int, weights: str | None, weights_dir: Path | None = None):
    """The backbone on 0..255 RGB (input_size, input_size, 3) -> its last feature map, and the
    preprocessing layer to put before it (None when the backbone does its own).

    weights: 'imagenet' (Keras's download and cache; for efficientnet_lite0 the file the
    import_weights stage wrote into `weights_dir`), None (random), or the path of a weights file.
    """
    shape = (input_size, input_size, 3)
    if name == "efficientnet_lite0":
        full = efficientnet_lite.efficientnet_lite0(shape, include_top=True)
        if weights == "imagenet":
            full.load_weights(_existing(Path(weights_dir or DEFAULT_WEIGHTS_DIR) / LITE0_WEIGHTS_FILE, True))
        elif weights is not None:
            full.load_weights(_existing(Path(weights), False))
        features = full.get_layer(efficientnet_lite.FEATURES_LAYER).output
        return keras.Model(full.input, features, name=BACKBONE), None
    if name not in BACKBONES:
        raise UserError(f"backbone '{name}': unknown; {choices_hint(name, BACKBONES)}")
    constructor, preprocessing = _keras_app(name)
    if weights not in (None, "imagenet"):
        weights = str(_existing(Path(weights), imported=False))
    try:
        model = constructor(include_top=False, weights=weights, input_shape=shape, name=BACKBONE)
    except Exception as exc:  # Keras raises a bare Exception when its download fails
        if weights == "imagenet" and "URL fetch failure" in str(exc):
            raise UserError(
                f"weights: imagenet for backbone {name} downloads from the Keras site, which failed "
                f"(offline?); use backbone efficientnet_lite0 (offline), a local weights file, or null"
            ) from None
        raise
    return model, _preprocessing(preprocessing)


def _existing(path: Path, imported: bool) -> Path:
    if not path.is_file():
        hint = "run `dvc repro import_weights` first" if imported else "give an existing .weights.h5 file"
        raise UserError(f"weights: {path}: file not found; {hint}")
    return path


def _preprocessing(kind: str):
    if kind == "tf":  # MobileNetV2: 0..255 -> -1..1
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")
    if kind == "caffe":  # ResNet50: RGB -> BGR minus the ImageNet mean; a fixed linear map
        return layers.Conv2D(3, 1, name="preprocess", trainable=False)
    return None


def transfer(
    input_shape,
    num_classes: int,
    backbone: str = "efficientnet_lite0",
    weights: str | None = "imagenet",
    input_size: int = 96,
    pooling: str = "avg",
    dropout: float = 0.2,
    weights_dir: Path | None = None,
) -> keras.Model:
    """Backbone plus new head; a pretrained backbone comes back frozen (phase 1)."""
    net, preprocess = build_backbone(backbone, input_size, weights, weights_dir)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    if tuple(input_shape[:2]) != (input_size, input_size):
        x = layers.Resizing(input_size, input_size, name="resize")(x)
    if preprocess is not None:
        x = preprocess(x)
    pretrained = weights is not None
    # training=False states the intent; what enforces it is BatchNorm staying frozen (see above).
    x = net(x, training=False) if pretrained else net(x)
    if pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        x = layers.GlobalMaxPooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    model = keras.Model(inputs, classifier_head(x, num_classes), name=f"transfer_{backbone}")
    if isinstance(preprocess, layers.Conv2D):
        permute = np.zeros((1, 1, 3, 3), "float32")
        for out in range(3):
            permute[0, 0, 2 - out, out] = 1.0
        preprocess.set_weights([permute, -np.asarray(CAFFE_BGR_MEAN, "float32")])
    net.trainable = not pretrained
    if not pretrained:
        for layer in net.layers:
            if isinstance(layer, layers.BatchNormalization):
                # The default 0.99 averages over hundreds of steps, 0.9 over tens; weights trained
                # from scratch change so fast in a short run (~100 steps) that either leaves the
                # inference statistics far from the current ones (faces: val accuracy 0.5 at
                # 0.99 and 0.9, 1.0 at 0.5 after six epochs).
                layer.momentum = SCRATCH_BN_MOMENTUM
    return model


def backbone_of(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE)


def unfreeze_top(model: keras.Model, k: int) -> list[str]:
    """Make the backbone's top k layers with weights trainable, all else frozen; their names.

    BatchNorm layers are not counted and stay frozen, hence in inference mode.
    """
    net = backbone_of(model)
    candidates = [
        layer for layer in net.layers if layer.weights and not isinstance(layer, layers.BatchNormalization)
    ]
    top = candidates[-k:]
    chosen = {id(layer) for layer in top}
    net.trainable = True  # a frozen parent would freeze its layers whatever their own flag says
    for layer in net.layers:
        layer.trainable = id(layer) in chosen
    return [layer.name for layer in top]
