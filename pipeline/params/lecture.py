"""The `lecture:` section: which trained models the lecture's figures show."""

from __future__ import annotations

from pydantic import Field

from pipeline.params.common import Strict

# `shapes` classes whose label a turn about the image centre keeps: a straight stroke stays one, two
# crossing strokes ('+' turned is 'x') stay a cross, a ring a ring, background background. Not
# `angle`: its class is defined by a '/' stroke, which a turn makes another direction (while a turned
# '\' line or '+' arm becomes that very stroke).
ROTATION_INVARIANT = ("line", "cross", "ring", "noise")


class TranslationExperiment(Strict):
    """Learned symmetries, translation: a feed-forward net without and with random-shift augmentation
    beside a CNN, under the shift test (each model's `shifts`)."""

    plain: str
    augmented: str
    reference: str


class RotationExperiment(Strict):
    """Learned symmetries, rotation: a CNN without and with rotation augmentation on turned test images."""

    plain: str
    augmented: str
    angles: list[float] = Field(min_length=2)


class LearningCurve(Strict):
    """The free lunch of pretrained weights: test accuracy against training images per class, the
    transfer model's frozen ImageNet backbone with a new head against a network from scratch."""

    dataset: str
    pretrained: str
    scratch: str
    per_class: list[int] = Field(min_length=1)
    seeds: int = Field(ge=1, le=10)
    epochs: int = Field(ge=1)


class Lecture(Strict):
    """Figures of the lecture in reports/lecture/; a model set to null skips its figure."""

    filter_model: str | None
    feature_model: str | None
    feature_images: int = Field(ge=1, le=16)
    feature_channels: int = Field(ge=1, le=64)
    translation: TranslationExperiment | None
    rotation: RotationExperiment | None
    learning_curve: LearningCurve | None
