"""Model builders by architecture name: a plain registry, one module per family.

A builder takes the input shape, the number of classes and its keyword hyperparameters (the
architecture's keys of a `models:` entry in params.yaml) and returns an uncompiled Keras model.
(The GAN networks, pipeline.models.dcgan and .cyclegan, are built by their tasks, not by name.)
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.models import classifiers, transfer, unet

BUILDERS: dict[str, Callable] = {
    "filter_net": classifiers.filter_net,
    "mlp": classifiers.mlp,
    "cnn": classifiers.cnn,
    "unet": unet.unet,
    "transfer": transfer.transfer,
}


def build(architecture: str, input_shape: tuple[int, ...], num_classes: int, **hyper):
    return BUILDERS[architecture](input_shape=input_shape, num_classes=num_classes, **hyper)
