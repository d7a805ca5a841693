"""The `augment:` section: albumentations transforms by name, applied to a dataset's training split.

Transform names and arguments are checked against albumentations by pipeline.data.augment.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.params.common import Strict, key_error


class Transform(Strict):
    name: str
    p: float = Field(ge=0.0, le=1.0)
    args: dict[str, Any] = Field(default_factory=dict)  # empty: the transform's own defaults


class Augment(Strict):
    # offline: copies written once by the augment stage; online: drawn afresh every epoch by the
    # train stage from (seed, epoch, copy, image) (pipeline.data.augment.OnlineAugment).
    mode: Literal["offline", "online"]
    copies: int = Field(ge=0, le=100)
    transforms: list[Transform]
    preview: int = Field(ge=1, le=64)

    @model_validator(mode="after")
    def _transforms_need_copies(self) -> Augment:
        # pipeline.data.augment.augment_split applies the transforms to the copies only.
        if self.transforms and not self.copies:
            raise key_error(
                "transforms",
                "ignored with copies: 0 (no augmented copy is made); give copies >= 1 or transforms: []",
            )
        return self
