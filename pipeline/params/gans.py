"""The `dcgans:` and `cyclegans:` sections: generative models, each on datasets of images."""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import Field, model_validator

from pipeline.params.common import Dropout, Strict

Filters = typing.Annotated[
    list[typing.Annotated[int, Field(ge=1, le=4096)]], Field(min_length=1, max_length=6)
]


class GanParams(Strict):
    """What both GAN families have: their data, how long they train, the two optimizers (Adam)."""

    dataset: str
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=65_536)
    g_lr: float = Field(gt=0.0, le=1.0)
    d_lr: float = Field(gt=0.0, le=1.0)
    beta_1: float = Field(ge=0.0, lt=1.0)
    grid: int = Field(ge=1, le=32)


class DcganParams(GanParams):
    """A DCGAN on one classification dataset; `classifier` (a model on that dataset, or on one with the
    same classes: see checks.same_labels) judges its samples."""

    classifier: str
    conditional: bool
    latent_dim: int = Field(ge=1, le=4096)
    generator_filters: Filters
    discriminator_filters: Filters
    dropout: Dropout
    label_smoothing: float = Field(ge=0.0, lt=0.5)
    instance_noise: float = Field(ge=0.0, le=2.0)
    upsampling: Literal["transpose", "upsample"]
    aux_classifier_weight: float = Field(ge=0.0, le=100.0)
    ema_decay: float = Field(ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _aux_needs_labels(self) -> DcganParams:
        if self.aux_classifier_weight and not self.conditional:
            raise ValueError(
                "aux_classifier_weight: the auxiliary class head needs conditional: true "
                "(the generator must know which class to draw); valid: 0 or conditional: true"
            )
        return self


class CycleganParams(GanParams):
    """A CycleGAN between two image datasets of the same shape: `dataset` (domain a) and `target` (b)."""

    target: str
    filters: int = Field(ge=1, le=1024)
    downsamplings: int = Field(ge=0, le=6)
    residual_blocks: int = Field(ge=0, le=32)
    discriminator_filters: int = Field(ge=1, le=1024)
    discriminator_layers: int = Field(ge=1, le=6)
    cycle_weight: float = Field(ge=0.0, le=1000.0)
    identity_weight: float = Field(ge=0.0, le=1000.0)
