"""The `models:` section: one strict class per `architecture`, picked by that key.

Each class holds exactly the keys its task reads: `label_smoothing` only the classifiers (the
classification loss of pipeline.training.compile_model), the loss keys only segmentation.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.params.common import Dropout, NonNegativeInt, PositiveInt, Strict

BACKBONES = ("efficientnet_lite0", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet50")


class TrainParams(Strict):
    """What every trainable model has: its data and how it is fitted."""

    dataset: str
    architecture: str
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=65_536)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"]
    lr: float = Field(gt=0.0, le=10.0)
    schedule: Literal["constant", "cosine"]
    weight_decay: float = Field(ge=0.0, le=1.0)
    early_stopping: int = Field(ge=0, le=10_000)
    # At least one shift: evaluate reports the drop from the smallest to the largest.
    shifts: list[NonNegativeInt] = Field(min_length=1)


class ClassifierParams(TrainParams):
    """What every classifier has beyond training: the smoothing of its class targets."""

    label_smoothing: float = Field(ge=0.0, lt=1.0)


class FilterNetParams(ClassifierParams):
    architecture: Literal["filter_net"]
    kernel_size: int = Field(ge=1, le=31)


class MlpParams(ClassifierParams):
    architecture: Literal["mlp"]
    hidden: list[PositiveInt]
    dropout: Dropout


class CnnParams(ClassifierParams):
    architecture: Literal["cnn"]
    filters: list[PositiveInt] = Field(min_length=1)
    kernel_size: int = Field(ge=1, le=31)
    strides: int = Field(ge=1, le=8)
    padding: Literal["same", "valid"]
    pool_size: int = Field(ge=1, le=8)
    batch_norm: bool
    dropout: Dropout
    head: Literal["global_avg", "global_max", "flatten"]
    dense: list[PositiveInt]
    dims: Literal[1, 2, 3]


LossTerm = Literal["cross_entropy", "dice", "focal"]


class SegmentationParams(TrainParams):
    """What every segmentation model has: its loss and how objects are counted at evaluation.

    `focal_gamma` is given exactly when the loss has a focal term, and `class_weights` only with a
    cross_entropy or focal term: pipeline.tasks.segmentation.SegmentationLoss reads them there only.
    """

    loss: dict[LossTerm, typing.Annotated[float, Field(ge=0.0)]]
    class_weights: Literal["balanced"] | list[typing.Annotated[float, Field(gt=0.0)]] | None = None
    focal_gamma: float | None = Field(None, ge=0.0, le=10.0)
    min_component: int = Field(ge=1, le=100_000)

    @field_validator("loss")
    @classmethod
    def _some_loss(cls, value: dict) -> dict:
        if not any(value.values()):
            raise ValueError("give at least one loss term a weight > 0 (cross_entropy, dice, focal)")
        return value

    @model_validator(mode="after")
    def _loss_keys_used(self) -> SegmentationParams:
        focal = bool(self.loss.get("focal"))
        if focal:
            self._require(["focal_gamma"], "with a focal term in loss")
        else:
            self._refuse(["focal_gamma"], "without a focal term in loss", "give loss a focal weight > 0")
        if not (focal or self.loss.get("cross_entropy")):
            self._refuse(
                ["class_weights"],
                "with dice alone in loss (class weights weigh cross_entropy and focal)",
                "give loss a cross_entropy or focal weight > 0",
            )
        return self


class UnetParams(SegmentationParams):
    architecture: Literal["unet"]
    depth: int = Field(ge=1, le=8)
    filters: int = Field(ge=1, le=1024)
    kernel_size: int = Field(ge=1, le=15)
    decoder: Literal["transpose", "upsample"]
    batch_norm: bool
    dropout: Dropout


class TransferParams(ClassifierParams):
    """An ImageNet backbone plus a new head; phase 1 trains the head (epochs, lr), phase 2 fine-tunes.

    Phase 2 runs for `fine_tune_epochs` (0: no phase 2) at `fine_tune_lr`; it unfreezes the top
    `fine_tune_layers` of pretrained weights, while with `weights: null` nothing was frozen
    (pipeline.tasks.transfer.fit_two_phases): those keys are given exactly where they are read.
    """

    # Read by the two-phase fit, not by the builder.
    FIT_FIELDS: typing.ClassVar[tuple[str, ...]] = ("fine_tune_epochs", "fine_tune_layers", "fine_tune_lr")

    architecture: Literal["transfer"]
    backbone: Literal[BACKBONES]
    weights: str | None  # imagenet, None (random initialisation) or the path of a weights file
    input_size: int = Field(ge=32, le=1024)
    pooling: Literal["avg", "max"]
    dropout: Dropout
    fine_tune_epochs: int = Field(ge=0, le=10_000)
    fine_tune_layers: int | None = Field(None, ge=1, le=10_000)
    fine_tune_lr: float | None = Field(None, gt=0.0, le=10.0)

    @field_validator("weights")
    @classmethod
    def _weights_ok(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("give imagenet, null (random initialisation) or the path of a weights file")
        return value

    @model_validator(mode="after")
    def _phase_two_keys_used(self) -> TransferParams:
        if not self.fine_tune_epochs:
            no_phase_two = "with fine_tune_epochs: 0 (no fine-tuning phase)"
            self._refuse(["fine_tune_lr", "fine_tune_layers"], no_phase_two, "give fine_tune_epochs > 0")
            return self
        self._require(["fine_tune_lr"], "with fine_tune_epochs > 0")
        if self.weights is None:
            self._refuse(
                ["fine_tune_layers"],
                "with weights: null (nothing is frozen: phase 2 trains every layer)",
                "give pretrained weights",
            )
        else:
            self._require(["fine_tune_layers"], "with pretrained weights and fine_tune_epochs > 0")
        return self


# Keep in step with pipeline.models.BUILDERS (a test checks both name the same architectures).
ARCHITECTURES: dict[str, type[TrainParams]] = {
    "filter_net": FilterNetParams,
    "mlp": MlpParams,
    "cnn": CnnParams,
    "unet": UnetParams,
    "transfer": TransferParams,
}
Model = FilterNetParams | MlpParams | CnnParams | UnetParams | TransferParams
AnyModel = typing.Annotated[Model, Field(discriminator="architecture")]  # a `models:` entry


def arch_kwargs(model: TrainParams) -> dict[str, Any]:
    """The builder's keyword hyperparameters: everything but the task's training fields."""
    task = SegmentationParams if isinstance(model, SegmentationParams) else ClassifierParams
    skip = set(task.model_fields) | set(getattr(model, "FIT_FIELDS", ()))
    return {k: v for k, v in model.model_dump().items() if k not in skip}
